//! The operating system, from `{root_fs}/etc/os-release` (else `{root_fs}/usr/lib/os-release`), as node_exporter's
//! `os` collector reports it.

use std::path::Path;

use crate::config::AgentConfig;
use crate::error::Error;
use crate::sample::Samples;

use super::{Skipped, read_optional};

/// The files looked for under `root_fs`, in order, as os-release(5) says.
const FILES: [&str; 2] = ["etc/os-release", "usr/lib/os-release"];

/// The keys of `node_os_info`, with their labels (sorted by label).
const INFO_LABELS: [(&str, &str); 12] = [
    ("BUILD_ID", "build_id"),
    ("ID", "id"),
    ("ID_LIKE", "id_like"),
    ("IMAGE_ID", "image_id"),
    ("IMAGE_VERSION", "image_version"),
    ("NAME", "name"),
    ("PRETTY_NAME", "pretty_name"),
    ("VARIANT", "variant"),
    ("VARIANT_ID", "variant_id"),
    ("VERSION", "version"),
    ("VERSION_CODENAME", "version_codename"),
    ("VERSION_ID", "version_id"),
];

/// The keys of `node_os_version`, with their labels.
const VERSION_LABELS: [(&str, &str); 3] = [("ID", "id"), ("ID_LIKE", "id_like"), ("NAME", "name")];

/// Emits `node_os_info` (1, labelled with the keys present), `node_os_version` (the major.minor of `VERSION_ID`,
/// when it starts with a positive number) and `node_os_support_end_timestamp_seconds` (from `SUPPORT_END`), all
/// gauges. Without either file: no series and no error.
pub(crate) fn collect(config: &AgentConfig, out: &mut Samples) -> Result<(), Error> {
    let mut found = None;
    for file in FILES {
        let path = config.host_path(file);
        if let Some(text) = read_optional(&path)? {
            found = Some((path, text));
            break;
        }
    }
    let Some((path, text)) = found else {
        tracing::debug!(root = %config.root_fs.display(), "no os-release file");
        return Ok(());
    };
    let mut skipped = Skipped::default();
    let pairs = parse(&path, &text, &mut skipped);
    let get = |key: &str| {
        pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    let labels = |keys: &[(&'static str, &'static str)]| -> Vec<(&'static str, &str)> {
        keys.iter()
            .filter_map(|(key, label)| get(key).map(|value| (*label, value)))
            .collect()
    };
    out.gauge("node_os_info", &labels(&INFO_LABELS), 1.0);
    if let Some(version) = get("VERSION_ID").and_then(major_minor) {
        out.gauge("node_os_version", &labels(&VERSION_LABELS), version);
    }
    if let Some(end) = get("SUPPORT_END") {
        match date_timestamp(end) {
            Some(seconds) => {
                out.gauge("node_os_support_end_timestamp_seconds", &[], seconds as f64)
            }
            None => skipped.note(
                &path,
                format!("SUPPORT_END {end:?} is not a YYYY-MM-DD date"),
            ),
        }
    }
    skipped.finish()
}

/// The `KEY=value` assignments of an os-release file, values unquoted as a shell would (double quotes with `\`
/// escapes, single quotes literal, backslash escapes outside quotes). Comments and blank lines are ignored; a line
/// that is not an assignment or has an unterminated quote is noted in `skipped` and left out.
pub(crate) fn parse(path: &Path, text: &str, skipped: &mut Skipped) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            skipped.note(path, format!("not an assignment: {line:?}"));
            continue;
        };
        let valid_key = key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_key {
            skipped.note(path, format!("not a variable name: {key:?}"));
            continue;
        }
        match unquote(value) {
            Some(value) => pairs.push((key.to_owned(), value)),
            None => skipped.note(path, format!("{key}: unterminated quote")),
        }
    }
    pairs
}

/// `value` as a shell reads it, up to the first unquoted blank or comment; `None` for an unterminated quote.
fn unquote(value: &str) -> Option<String> {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => loop {
                match chars.next()? {
                    '"' => break,
                    '\\' => match chars.next()? {
                        escaped @ ('"' | '\\' | '$' | '`') => out.push(escaped),
                        other => {
                            out.push('\\');
                            out.push(other);
                        }
                    },
                    other => out.push(other),
                }
            },
            '\'' => loop {
                match chars.next()? {
                    '\'' => break,
                    other => out.push(other),
                }
            },
            '\\' => out.push(chars.next()?),
            c if c.is_whitespace() || c == '#' => break,
            c => out.push(c),
        }
    }
    Some(out)
}

/// node_exporter's version: the leading `[0-9]+\.?[0-9]*` of `VERSION_ID` as a number (`22.04` of `22.04.3`), when
/// there is one and it is above 0.
fn major_minor(version_id: &str) -> Option<f64> {
    let digits = |s: &str| s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let major = digits(version_id);
    if major == 0 {
        return None;
    }
    let end = match version_id[major..].strip_prefix('.') {
        Some(rest) => major + 1 + digits(rest),
        None => major,
    };
    let number = version_id[..end].trim_end_matches('.');
    number.parse::<f64>().ok().filter(|v| *v > 0.0)
}

/// Seconds since the epoch of midnight UTC on `date` (`YYYY-MM-DD`).
fn date_timestamp(date: &str) -> Option<i64> {
    let mut parts = date.splitn(3, '-');
    let (year, month, day) = (parts.next()?, parts.next()?, parts.next()?);
    if year.len() != 4 || month.len() != 2 || day.len() != 2 {
        return None;
    }
    let (year, month, day): (i64, i64, i64) =
        (year.parse().ok()?, month.parse().ok()?, day.parse().ok()?);
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if !(1..=days_in_month).contains(&day) {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm), March-based years.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    Some((era * 146_097 + day_of_era - 719_468) * 86_400)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::{Kind, Sample};

    const DEBIAN: &str = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n\
        NAME=\"Debian GNU/Linux\"\n\
        VERSION_ID=\"12\"\n\
        VERSION=\"12 (bookworm)\"\n\
        VERSION_CODENAME=bookworm\n\
        ID=debian\n\
        HOME_URL=\"https://www.debian.org/\"\n";

    fn collect_files(files: &[(&str, &str)]) -> (Vec<Sample>, Result<(), Error>) {
        super::super::collect_fake_proc("", files, collect)
    }

    fn labels(sample: &Sample) -> Vec<(&str, &str)> {
        sample
            .labels
            .iter()
            .filter(|(name, _)| name != "host")
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect()
    }

    #[test]
    fn info_and_version_from_etc_under_root_fs() {
        let (samples, result) = collect_files(&[
            ("etc/os-release", DEBIAN),
            ("usr/lib/os-release", "ID=other\n"),
        ]);
        result.expect("parses");
        assert_eq!(samples.len(), 2);
        assert_eq!(samples[0].name, "node_os_info");
        assert_eq!((samples[0].value, samples[0].kind), (1.0, Kind::Gauge));
        assert_eq!(
            labels(&samples[0]),
            [
                ("id", "debian"),
                ("name", "Debian GNU/Linux"),
                ("pretty_name", "Debian GNU/Linux 12 (bookworm)"),
                ("version", "12 (bookworm)"),
                ("version_codename", "bookworm"),
                ("version_id", "12"),
            ]
        );
        assert_eq!(samples[1].name, "node_os_version");
        assert_eq!((samples[1].value, samples[1].kind), (12.0, Kind::Gauge));
        assert_eq!(
            labels(&samples[1]),
            [("id", "debian"), ("name", "Debian GNU/Linux")]
        );
    }

    #[test]
    fn usr_lib_when_etc_has_none_and_the_support_end() {
        let ubuntu = "NAME='Ubuntu'\nVERSION_ID=\"22.04\"\nID=ubuntu\nID_LIKE=debian\nSUPPORT_END=2027-04-30\n";
        let (samples, result) = collect_files(&[("usr/lib/os-release", ubuntu)]);
        result.expect("parses");
        let find = |name: &str| samples.iter().find(|s| s.name == name);
        let version = find("node_os_version").expect("a version");
        assert_eq!(version.value, 22.04);
        assert_eq!(
            labels(version),
            [("id", "ubuntu"), ("id_like", "debian"), ("name", "Ubuntu")]
        );
        let end = find("node_os_support_end_timestamp_seconds").expect("an end");
        // date -u -d 2027-04-30 +%s
        assert_eq!(end.value, 1_809_043_200.0);
    }

    #[test]
    fn no_file_no_series_and_no_error() {
        let (samples, result) = collect_files(&[]);
        result.expect("absent is fine");
        assert!(samples.is_empty());
    }

    #[test]
    fn a_truncated_or_garbled_file_keeps_what_it_can() {
        let text = "ID=alpine\nNAME=\"Alpine \\\"Linux\\\"\" # a comment\nnot an assignment\n1X=2\n\
                    VERSION_ID=3.18.4\nSUPPORT_END=2025-02-30\nPRETTY_NAME=\"Alpine Linux v3.1";
        let (samples, result) = collect_files(&[("etc/os-release", text)]);
        let error = result.expect_err("reported").to_string();
        assert!(error.contains("and 3 more"), "{error}");
        assert_eq!(
            labels(&samples[0]),
            [
                ("id", "alpine"),
                ("name", "Alpine \"Linux\""),
                ("version_id", "3.18.4")
            ]
        );
        assert_eq!(samples[1].name, "node_os_version");
        assert_eq!(samples[1].value, 3.18);
        assert_eq!(samples.len(), 2);
    }

    #[test]
    fn versions_and_dates_as_node_exporter_reads_them() {
        assert_eq!(major_minor("12"), Some(12.0));
        assert_eq!(major_minor("12."), Some(12.0));
        assert_eq!(major_minor("7.9.2009"), Some(7.9));
        assert_eq!(major_minor("0"), None);
        assert_eq!(major_minor("rolling"), None);
        assert_eq!(major_minor(""), None);
        assert_eq!(date_timestamp("1970-01-01"), Some(0));
        assert_eq!(date_timestamp("2000-03-01"), Some(951_868_800));
        assert_eq!(date_timestamp("2024-02-29"), Some(1_709_164_800));
        assert_eq!(date_timestamp("2023-02-29"), None);
        assert_eq!(date_timestamp("2024-13-01"), None);
        assert_eq!(date_timestamp("24-1-1"), None);
    }
}
