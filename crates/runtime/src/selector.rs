//! Prometheus metric and label names, label matchers and series selectors (`name{label="value",other=~"re.*"}`),
//! with regular expressions anchored at both ends and bounded in size, as every matcher of GoMon compiles them.

use regex::{Regex, RegexBuilder};

/// Largest compiled regular expression of a matcher (the regex crate's `size_limit`, and its lazy DFA's cache): an
/// expression such as `\w{50}` that would take more is refused rather than compiled.
pub const MAX_REGEX_BYTES: usize = 1024 * 1024;
/// Longest series selector, in bytes.
pub const MAX_SELECTOR_BYTES: usize = 4096;
/// Most label matchers of one selector.
pub const MAX_SELECTOR_MATCHERS: usize = 32;

/// `pattern` anchored at both ends (`^(?:pattern)$`), compiled within [`MAX_REGEX_BYTES`].
pub fn anchored_regex(pattern: &str) -> Result<Regex, regex::Error> {
    RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(MAX_REGEX_BYTES)
        .dfa_size_limit(MAX_REGEX_BYTES)
        .build()
}

/// A valid metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`
pub fn valid_metric_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'A'..=b'Z' | b'_' | b':'))
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

/// A valid label name: `[a-zA-Z_][a-zA-Z0-9_]*`
pub fn valid_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'A'..=b'Z' | b'_'))
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// How a label matcher compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `=`
    Equal,
    /// `!=`
    NotEqual,
    /// `=~`
    Regex,
    /// `!~`
    NotRegex,
}

/// One label matcher of a selector: `name` `op` `value`; an absent label reads as the empty value.
#[derive(Clone, Debug)]
pub struct LabelMatcher {
    name: String,
    op: Op,
    value: String,
    regex: Option<Regex>,
}

impl LabelMatcher {
    /// The matcher `name op value`; a regular expression that does not compile is an error saying why.
    pub fn new(name: &str, op: Op, value: &str) -> Result<Self, String> {
        let regex = match op {
            Op::Regex | Op::NotRegex => Some(anchored_regex(value).map_err(|error| {
                format!("label {name:.40}: invalid regular expression: {error}")
            })?),
            Op::Equal | Op::NotEqual => None,
        };
        Ok(Self {
            name: name.to_owned(),
            op,
            value: value.to_owned(),
            regex,
        })
    }

    /// Whether a label whose value is `actual` (empty when absent) matches.
    pub fn matches(&self, actual: &str) -> bool {
        match (&self.regex, self.op) {
            (Some(regex), Op::Regex) => regex.is_match(actual),
            (Some(regex), _) => !regex.is_match(actual),
            (None, Op::Equal) => actual == self.value,
            (None, _) => actual != self.value,
        }
    }
}

/// A Prometheus series selector: an optional metric name and label matchers in braces, as `match[]` of
/// `/federate` takes them. The name is the matcher `__name__="name"`.
#[derive(Clone, Debug)]
pub struct Selector {
    matchers: Vec<LabelMatcher>,
}

impl Selector {
    /// Parses `name`, `name{matchers}` or `{matchers}`, where matchers are `label op "value"` separated by commas
    /// (`op` one of `=`, `!=`, `=~`, `!~`; values in double, single or back quotes). As in Prometheus, at least one
    /// matcher must not match the empty value (a selector cannot select every series).
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.len() > MAX_SELECTOR_BYTES {
            return Err(format!(
                "a selector may be at most {MAX_SELECTOR_BYTES} bytes"
            ));
        }
        let mut parser = Parser {
            text,
            rest: text.trim(),
        };
        let mut matchers = Vec::new();
        let name = parser.identifier(true);
        if !name.is_empty() {
            matchers.push(LabelMatcher::new("__name__", Op::Equal, name)?);
        }
        if parser.eat("{") {
            loop {
                parser.skip_space();
                if parser.eat("}") {
                    break;
                }
                let label = parser.identifier(false);
                if label.is_empty() {
                    return Err(parser.error("a label name"));
                }
                parser.skip_space();
                let op = if parser.eat("=~") {
                    Op::Regex
                } else if parser.eat("!~") {
                    Op::NotRegex
                } else if parser.eat("!=") {
                    Op::NotEqual
                } else if parser.eat("=") {
                    Op::Equal
                } else {
                    return Err(parser.error("=, !=, =~ or !~"));
                };
                parser.skip_space();
                let value = parser.string()?;
                if matchers.len() == MAX_SELECTOR_MATCHERS {
                    return Err(format!(
                        "a selector may hold at most {MAX_SELECTOR_MATCHERS} matchers"
                    ));
                }
                matchers.push(LabelMatcher::new(label, op, &value)?);
                parser.skip_space();
                if !parser.eat(",") {
                    parser.skip_space();
                    if !parser.eat("}") {
                        return Err(parser.error(", or }"));
                    }
                    break;
                }
            }
        }
        parser.skip_space();
        if !parser.rest.is_empty() {
            return Err(parser.error("the end of the selector"));
        }
        if matchers.iter().all(|matcher| matcher.matches("")) {
            return Err(format!(
                "{:.80}: a selector needs a metric name or a matcher that does not match the empty value",
                text
            ));
        }
        Ok(Self { matchers })
    }

    /// Whether the series whose labels `label` looks up (`__name__` included; `None` when absent) is selected.
    pub fn matches<'a>(&self, label: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.matchers
            .iter()
            .all(|matcher| matcher.matches(label(&matcher.name).unwrap_or("")))
    }
}

struct Parser<'a> {
    text: &'a str,
    rest: &'a str,
}

impl<'a> Parser<'a> {
    fn error(&self, expected: &str) -> String {
        let at = self.text.len() - self.rest.len();
        format!("{:.80}: expected {expected} at byte {at}", self.text.trim())
    }

    fn skip_space(&mut self) {
        self.rest = self.rest.trim_start();
    }

    fn eat(&mut self, token: &str) -> bool {
        match self.rest.strip_prefix(token) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }

    /// A metric name (`colons` allowed) or a label name; empty when there is none.
    fn identifier(&mut self, colons: bool) -> &'a str {
        let end = self
            .rest
            .char_indices()
            .find(|&(at, c)| {
                !(c.is_ascii_alphabetic()
                    || c == '_'
                    || (colons && c == ':')
                    || (at > 0 && c.is_ascii_digit()))
            })
            .map_or(self.rest.len(), |(at, _)| at);
        let (identifier, rest) = self.rest.split_at(end);
        self.rest = rest;
        identifier
    }

    /// A quoted string: double or single quotes with backslash escapes, or back quotes taken as they are.
    fn string(&mut self) -> Result<String, String> {
        let mut chars = self.rest.char_indices();
        let quote = match chars.next() {
            Some((_, quote @ ('"' | '\'' | '`'))) => quote,
            _ => return Err(self.error("a quoted value")),
        };
        let mut value = String::new();
        while let Some((at, c)) = chars.next() {
            if c == quote {
                self.rest = &self.rest[at + c.len_utf8()..];
                return Ok(value);
            }
            if c != '\\' || quote == '`' {
                value.push(c);
                continue;
            }
            let escaped = match chars.next() {
                Some((_, 'n')) => '\n',
                Some((_, 't')) => '\t',
                Some((_, 'r')) => '\r',
                Some((_, c @ ('\\' | '"' | '\''))) => c,
                _ => return Err(self.error("a valid escape (\\\\, \\\", \\', \\n, \\t, \\r)")),
            };
            value.push(escaped);
        }
        Err(self.error("a closing quote"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn selects(selector: &str, labels: &[(&str, &str)]) -> bool {
        Selector::parse(selector)
            .expect("valid selector")
            .matches(|name| {
                labels
                    .iter()
                    .find(|(label, _)| *label == name)
                    .map(|(_, value)| *value)
            })
    }

    #[test]
    fn selectors_select_as_in_prometheus() {
        let series = [
            ("__name__", "node_cpu_seconds_total"),
            ("cpu", "0"),
            ("mode", "idle"),
            ("host", "n1"),
        ];
        assert!(selects("node_cpu_seconds_total", &series));
        assert!(selects("node_cpu_seconds_total{}", &series));
        assert!(selects(r#"{__name__=~"node_cpu.*"}"#, &series));
        assert!(selects(
            r#"node_cpu_seconds_total{mode="idle", cpu!="1",}"#,
            &series
        ));
        assert!(selects(
            r#"{host=~'n[0-9]+', mode!~`user|system`}"#,
            &series
        ));
        assert!(selects(r#"{host="n1", absent=""}"#, &series));
        assert!(!selects(r#"{host="n1", absent!=""}"#, &series));
        assert!(!selects("node_memory_MemTotal_bytes", &series));
        assert!(!selects(r#"{host=~"n"}"#, &series), "anchored");
        assert!(selects(r#"{host="a\"b\\c"}"#, &[("host", "a\"b\\c")]));
    }

    #[test]
    fn bad_selectors_say_what_is_wrong() {
        for (selector, expected) in [
            ("", "a metric name or a matcher"),
            (r#"{host=~".*"}"#, "a metric name or a matcher"),
            (r#"{host!="x"}"#, "a metric name or a matcher"),
            ("{", "a label name"),
            (r#"{host="n1""#, ", or }"),
            (r#"{host=n1}"#, "a quoted value"),
            (r#"{host~"n1"}"#, "=, !=, =~ or !~"),
            (r#"{host="n1} x"#, "a closing quote"),
            (r#"up{host="n1"} x"#, "the end of the selector"),
            (r#"{host=~"(a"}"#, "invalid regular expression"),
            ("{host=~`\\w{50}`}", "invalid regular expression"),
            (r#"{host="\x"}"#, "a valid escape"),
        ] {
            let error = Selector::parse(selector).expect_err(selector);
            assert!(error.contains(expected), "{selector}: {error}");
        }
        let many = (0..33)
            .map(|i| format!("l{i}=\"v\""))
            .collect::<Vec<_>>()
            .join(",");
        let error = Selector::parse(&format!("{{{many}}}")).expect_err("too many");
        assert!(error.contains("at most 32"), "{error}");
        let long = format!("{{host=\"{}\"}}", "x".repeat(MAX_SELECTOR_BYTES));
        assert!(Selector::parse(&long).is_err());
    }

    #[test]
    fn names_follow_prometheus_rules() {
        for good in ["a", "node_cpu_seconds_total", ":recorded:rule", "_x9"] {
            assert!(valid_metric_name(good), "{good}");
        }
        for bad in ["", "9a", "a-b", "a b", "é"] {
            assert!(!valid_metric_name(bad), "{bad}");
        }
        assert!(valid_label_name("mountpoint"));
        assert!(!valid_label_name("a:b"));
        assert!(!valid_label_name(""));
    }
}
