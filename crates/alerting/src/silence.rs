//! Silences (Alertmanager API v2): label matchers that mute the notifications of the alerts they match for a
//! while. Pure data and pure functions, no I/O.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, OnceLock};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::model::{Alert, MAX_ACTOR, check_no_nul};

/// Longest label name or value of a matcher, in bytes.
pub const MAX_MATCHER_TEXT: usize = 1024;
/// Most matchers of one silence, or `filter` parameters of one request.
pub const MAX_MATCHERS: usize = 32;

/// One label matcher: `name` `=`, `!=`, `=~` or `!~` `value`. Regular expressions are anchored at both ends, as in
/// Alertmanager; an absent label reads as the empty value. A regular expression is compiled once, when the matcher
/// is first used, and kept with it.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Matcher {
    /// Label name.
    pub name: String,
    /// Value, or regular expression when `isRegex`.
    pub value: String,
    /// `value` is a regular expression.
    pub is_regex: bool,
    /// Matches when equal (`=`, `=~`); false: when not equal (`!=`, `!~`).
    #[serde(default = "equal_by_default")]
    pub is_equal: bool,
    /// The compiled expression (regex matchers), or why it does not compile.
    #[serde(skip)]
    #[schema(ignore)]
    compiled: OnceLock<Result<regex::Regex, String>>,
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        (&self.name, &self.value, self.is_regex, self.is_equal)
            == (&other.name, &other.value, other.is_regex, other.is_equal)
    }
}

fn equal_by_default() -> bool {
    true
}

impl Matcher {
    /// Parses `name="value"`, `name!="value"`, `name=~"regex"`, `name!~"regex"` (quotes optional, braces around it
    /// allowed, as amtool and Alertmanager's `filter` write them).
    pub fn parse(text: &str) -> std::result::Result<Matcher, String> {
        let trimmed = text
            .trim()
            .trim_start_matches('{')
            .trim_end_matches('}')
            .trim();
        let invalid = || {
            format!(
                "{text:?} is not a matcher name=\"value\", name!=\"value\", name=~\"re\" or name!~\"re\""
            )
        };
        let position = trimmed.find(['=', '!']).ok_or_else(invalid)?;
        let (name, rest) = trimmed.split_at(position);
        let (is_equal, is_regex, value) = if let Some(value) = rest.strip_prefix("=~") {
            (true, true, value)
        } else if let Some(value) = rest.strip_prefix("!~") {
            (false, true, value)
        } else if let Some(value) = rest.strip_prefix("!=") {
            (false, false, value)
        } else if let Some(value) = rest.strip_prefix('=') {
            (true, false, value)
        } else {
            return Err(invalid());
        };
        let name = name.trim();
        if name.is_empty() {
            return Err(invalid());
        }
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        let matcher = Matcher::new(name, value, is_regex, is_equal);
        matcher.check()?;
        Ok(matcher)
    }

    /// The matcher `name` (`=`, `!=`, `=~`, `!~` by `is_regex` and `is_equal`) `value`, not yet checked.
    pub fn new(name: &str, value: &str, is_regex: bool, is_equal: bool) -> Matcher {
        Matcher {
            name: name.to_owned(),
            value: value.to_owned(),
            is_regex,
            is_equal,
            compiled: OnceLock::new(),
        }
    }

    /// Checks the name and value: not too long, and a regular expression that compiles within
    /// [`gomon_runtime::selector::MAX_REGEX_BYTES`]. The message says what is wrong.
    pub fn check(&self) -> std::result::Result<(), String> {
        if self.name.len() > MAX_MATCHER_TEXT || self.value.len() > MAX_MATCHER_TEXT {
            return Err(format!(
                "matcher {:.40}: name and value may be at most {MAX_MATCHER_TEXT} bytes",
                self.name
            ));
        }
        self.regex().map(|_| ())
    }

    /// The compiled regular expression of a regex matcher (compiled on first use); `None` for an equality
    /// matcher.
    fn regex(&self) -> std::result::Result<Option<&regex::Regex>, String> {
        if !self.is_regex {
            return Ok(None);
        }
        let compiled = self.compiled.get_or_init(|| {
            compile(&self.value).map_err(|error| {
                format!(
                    "matcher {:.40}: invalid regular expression: {error}",
                    self.name
                )
            })
        });
        compiled.as_ref().map(Some).map_err(Clone::clone)
    }

    /// Whether `labels` match. A regex matcher whose expression does not compile matches nothing.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let actual = labels.get(&self.name).map_or("", String::as_str);
        let found = match self.regex() {
            Ok(Some(regex)) => regex.is_match(actual),
            Ok(None) => actual == self.value,
            Err(_) => return false,
        };
        found == self.is_equal
    }
}

/// Most expressions [`compile`] keeps.
const MAX_COMPILED: usize = 16;

/// The expressions [`compile`] keeps, by pattern.
static COMPILED: OnceLock<Mutex<HashMap<String, regex::Regex>>> = OnceLock::new();

/// `pattern` anchored at both ends and compiled (see [`gomon_runtime::selector::anchored_regex`]), or a copy of
/// the one compiled last time it was asked for: a dashboard sends the same few `filter` expressions on every
/// refresh, and compiling one can cost more than matching it against thousands of alerts. At most
/// [`MAX_COMPILED`] are kept (all forgotten when full: an expression each time costs what it did without them);
/// a copy shares the compiled program, not the memory its searches use.
fn compile(pattern: &str) -> std::result::Result<regex::Regex, regex::Error> {
    let compiled = COMPILED.get_or_init(Default::default);
    if let Ok(kept) = compiled.lock()
        && let Some(regex) = kept.get(pattern)
    {
        return Ok(regex.clone());
    }
    let regex = gomon_runtime::selector::anchored_regex(pattern)?;
    if let Ok(mut kept) = compiled.lock() {
        if kept.len() >= MAX_COMPILED {
            kept.clear();
        }
        kept.insert(pattern.to_owned(), regex.clone());
    }
    Ok(regex)
}

/// The labels silences and `filter` matchers see for `alert`: its labels, with `alertname` set to the title when it
/// has none.
pub fn alert_labels(alert: &Alert) -> BTreeMap<String, String> {
    let mut labels = alert.labels.clone();
    labels
        .entry("alertname".into())
        .or_insert_with(|| alert.title.clone());
    labels
}

/// A silence as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Silence {
    /// Its id.
    pub id: Uuid,
    /// Every one must match for an alert to be silenced.
    pub matchers: Vec<Matcher>,
    /// When it starts muting.
    pub starts_at: DateTime<Utc>,
    /// When it stops.
    pub ends_at: DateTime<Utc>,
    /// Who made it.
    pub created_by: String,
    /// Why.
    pub comment: String,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl Silence {
    /// `pending`, `active` or `expired` at `now`.
    pub fn state(&self, now: DateTime<Utc>) -> &'static str {
        if now < self.starts_at {
            "pending"
        } else if now < self.ends_at {
            "active"
        } else {
            "expired"
        }
    }

    /// Whether it mutes an alert with `labels` at `now`.
    pub fn mutes(&self, labels: &BTreeMap<String, String>, now: DateTime<Utc>) -> bool {
        self.state(now) == "active" && self.matchers.iter().all(|m| m.matches(labels))
    }
}

/// One entry of a silence's audit trail: who created, changed or expired it, when, and the silence as it was then.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SilenceAction {
    /// The silence concerned.
    pub silence_id: Uuid,
    /// `created`, `updated` or `expired`.
    pub action: String,
    /// Who: the API token's name (with no tokens, the silence's `createdBy`).
    pub actor: Option<String>,
    /// The silence after the action: matchers, `startsAt`, `endsAt`, `createdBy`, `comment`.
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    /// When.
    pub created_at: DateTime<Utc>,
}

impl SilenceAction {
    /// The entry for `action` on `silence` by `actor`, at the silence's `updated_at`.
    pub fn new(silence: &Silence, action: &str, actor: Option<String>) -> Self {
        SilenceAction {
            silence_id: silence.id,
            action: action.to_owned(),
            actor,
            details: serde_json::json!({
                "matchers": silence.matchers,
                "startsAt": silence.starts_at,
                "endsAt": silence.ends_at,
                "createdBy": silence.created_by,
                "comment": silence.comment,
            }),
            created_at: silence.updated_at,
        }
    }
}

/// A silence as posted to `/api/v2/silences` (with `id`: a change of that silence).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PostableSilence {
    /// The silence to change; absent for a new one.
    #[serde(default)]
    pub id: Option<String>,
    /// At least one.
    pub matchers: Vec<Matcher>,
    /// When it starts muting.
    pub starts_at: DateTime<Utc>,
    /// When it stops; after `startsAt`.
    pub ends_at: DateTime<Utc>,
    /// Who makes it; 1 to 100 characters.
    pub created_by: String,
    /// Why; not empty.
    pub comment: String,
}

impl PostableSilence {
    /// Checks every field, naming the first invalid one.
    pub fn validate(&self) -> Result<()> {
        if self.matchers.is_empty() {
            return Err(Error::invalid(
                "matchers",
                "at least one matcher is required",
            ));
        }
        if self.matchers.len() > MAX_MATCHERS {
            return Err(Error::invalid(
                "matchers",
                format!("at most {MAX_MATCHERS} matchers are allowed"),
            ));
        }
        for (index, matcher) in self.matchers.iter().enumerate() {
            if matcher.name.is_empty() {
                return Err(Error::invalid(
                    &format!("matchers[{index}].name"),
                    "must not be empty",
                ));
            }
            check_no_nul(&format!("matchers[{index}].name"), &matcher.name)?;
            check_no_nul(&format!("matchers[{index}].value"), &matcher.value)?;
            matcher
                .check()
                .map_err(|message| Error::invalid(&format!("matchers[{index}].value"), message))?;
        }
        if self.ends_at <= self.starts_at {
            return Err(Error::invalid("endsAt", "must be after startsAt"));
        }
        let created_by = self.created_by.trim();
        if created_by.is_empty() || created_by.chars().count() > MAX_ACTOR {
            return Err(Error::invalid(
                "createdBy",
                format!("must be 1 to {MAX_ACTOR} characters"),
            ));
        }
        check_no_nul("createdBy", &self.created_by)?;
        if self.comment.trim().is_empty() {
            return Err(Error::invalid("comment", "must not be empty"));
        }
        check_no_nul("comment", &self.comment)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiled_expressions_are_kept_and_bounded() {
        for round in 0..2 {
            for i in 0..(MAX_COMPILED * 2) {
                let regex = compile(&format!("kept-{i}|.*-{i}")).expect("compiles");
                assert!(regex.is_match(&format!("x-{i}")), "round {round}, {i}");
                assert!(!regex.is_match(&format!("x-{i}y")), "anchored");
            }
        }
        assert!(compile("(").is_err());
        let kept = COMPILED.get().expect("kept").lock().expect("lock");
        assert!(kept.len() <= MAX_COMPILED, "{}", kept.len());
        assert!(!kept.contains_key("("), "an error is not kept");
    }

    fn labels() -> BTreeMap<String, String> {
        BTreeMap::from([
            ("alertname".to_owned(), "HighCPU".to_owned()),
            ("instance".to_owned(), "node-1:9100".to_owned()),
        ])
    }

    #[test]
    fn matchers_parse_and_match_all_four_operators() {
        let labels = labels();
        for (text, expected) in [
            ("alertname=\"HighCPU\"", true),
            ("{alertname!=HighCPU}", false),
            ("instance=~\"node-.*\"", true),
            ("instance=~node", false),
            ("instance!~\"node-2.*\"", true),
            ("team=\"\"", true),
        ] {
            let matcher = Matcher::parse(text).expect(text);
            assert_eq!(matcher.matches(&labels), expected, "{text}");
        }
        assert!(Matcher::parse("novalue").is_err());
        assert!(Matcher::parse("=x").is_err());
        assert!(Matcher::parse("a=~(").is_err());
    }

    #[test]
    fn expensive_or_long_expressions_are_refused() {
        let error = Matcher::parse("instance=~\"\\w{50}\"").expect_err("too large");
        assert!(error.contains("instance"), "{error}");
        assert!(Matcher::parse("instance=~\"\\w{10}\"").is_ok());
        let long = format!("a=\"{}\"", "x".repeat(MAX_MATCHER_TEXT + 1));
        assert!(Matcher::parse(&long).is_err());
    }

    #[test]
    fn a_silence_mutes_only_while_active() {
        let now = crate::model::now();
        let silence = Silence {
            id: Uuid::new_v4(),
            matchers: vec![Matcher::parse("alertname=HighCPU").expect("valid")],
            starts_at: now,
            ends_at: now + chrono::Duration::hours(1),
            created_by: "ann".into(),
            comment: "maintenance".into(),
            updated_at: now,
        };
        assert!(silence.mutes(&labels(), now));
        assert!(!silence.mutes(&labels(), now - chrono::Duration::seconds(1)));
        assert!(!silence.mutes(&labels(), now + chrono::Duration::hours(2)));
        assert_eq!(silence.state(now + chrono::Duration::hours(2)), "expired");
        let mut other = labels();
        other.insert("alertname".into(), "Other".into());
        assert!(!silence.mutes(&other, now));
    }
}
