//! Metrics that other programs write to `*.prom` files in `agent.textfile_directory`, in the Prometheus text
//! format, as node_exporter's `textfile` collector reads them; and `node_textfile_scrape_error`, which
//! node_exporter exports whether a directory is set or not.
//!
//! A file that cannot be read or parsed, carries timestamps, or would take the cycle over [`MAX_SAMPLES`] is left
//! out whole and sets `node_textfile_scrape_error` to 1; the other files are still read.

use std::collections::HashMap;
use std::path::Path;

use gomon_runtime::selector::{valid_label_name, valid_metric_name};

use crate::config::AgentConfig;
use crate::error::Error;
use crate::sample::Samples;

use super::read;

/// Most samples all the files of one cycle may give; the files past it are refused.
pub(crate) const MAX_SAMPLES: usize = 10_000;

/// Most labels of one sample, `host` not counted (the aggregator refuses samples of more than 32).
pub(crate) const MAX_LABELS: usize = 24;

/// Files larger than this are refused unread.
pub(crate) const MAX_FILE_BYTES: u64 = 4 << 20;

/// One sample of a text file.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Line {
    pub(crate) name: String,
    pub(crate) labels: Labels,
    pub(crate) value: f64,
    /// A counter (a `counter`, or a histogram's or summary's `_bucket`, `_count` and `_sum`); else a gauge.
    pub(crate) counter: bool,
}

/// Emits the samples of every `*.prom` file of the directory, `node_textfile_mtime_seconds{file}` for each file
/// read, and `node_textfile_scrape_error`.
pub(crate) fn collect(config: &AgentConfig, out: &mut Samples) {
    let mut errored = false;
    if let Some(directory) = &config.textfile_directory {
        errored = !read_directory(directory, out);
    }
    out.gauge(
        "node_textfile_scrape_error",
        &[],
        if errored { 1.0 } else { 0.0 },
    );
}

/// Reads every `*.prom` file of `directory` in name order; false when anything failed.
fn read_directory(directory: &Path, out: &mut Samples) -> bool {
    let entries = match std::fs::read_dir(directory) {
        Ok(entries) => entries,
        Err(error) => {
            tracing::warn!(directory = %directory.display(), %error, "cannot read the textfile directory");
            return false;
        }
    };
    let mut files: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "prom"))
        .collect();
    files.sort();
    let mut ok = true;
    let mut budget = MAX_SAMPLES;
    let mut mtimes = Vec::new();
    for file in files {
        match read_file(&file, budget) {
            Ok((lines, mtime)) => {
                budget -= lines.len();
                for line in lines {
                    let labels: Vec<(&str, &str)> = line
                        .labels
                        .iter()
                        .map(|(name, value)| (name.as_str(), value.as_str()))
                        .collect();
                    if line.counter {
                        out.counter(&line.name, &labels, line.value);
                    } else {
                        out.gauge(&line.name, &labels, line.value);
                    }
                }
                mtimes.push((file.display().to_string(), mtime));
            }
            Err(error) => {
                tracing::warn!(%error, "textfile left out");
                ok = false;
            }
        }
    }
    for (file, mtime) in mtimes {
        out.gauge("node_textfile_mtime_seconds", &[("file", &file)], mtime);
    }
    ok
}

/// The samples of one file, at most `budget`, and its modification time in seconds since the epoch.
fn read_file(path: &Path, budget: usize) -> Result<(Vec<Line>, f64), Error> {
    let metadata = std::fs::metadata(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if metadata.len() > MAX_FILE_BYTES {
        return Err(Error::parse(
            path,
            format!("larger than {MAX_FILE_BYTES} bytes"),
        ));
    }
    let lines = parse(path, &read(path)?)?;
    if lines.len() > budget {
        return Err(Error::parse(
            path,
            format!("more than the {MAX_SAMPLES} samples the text files of a cycle may give"),
        ));
    }
    let mtime = metadata
        .modified()
        .ok()
        .and_then(|time| time.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0.0, |since| since.as_secs() as f64);
    Ok((lines, mtime))
}

/// Parses the Prometheus text format (version 0.0.4): `# TYPE` lines give the kind, other comments are skipped,
/// a sample is `name{label="value",...} value`; a timestamp, an invalid name, a repeated label or more than
/// [`MAX_LABELS`] labels is an error. A `host` label is dropped: every sample's `host` is the agent's.
pub(crate) fn parse(path: &Path, text: &str) -> Result<Vec<Line>, Error> {
    let mut types: HashMap<&str, &str> = HashMap::new();
    let mut lines = Vec::new();
    for (number, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let at = |message: String| Error::parse(path, format!("line {}: {message}", number + 1));
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let mut words = comment.split_whitespace();
            if words.next() == Some("TYPE")
                && let (Some(name), Some(kind)) = (words.next(), words.next())
            {
                types.insert(name, kind);
            }
            continue;
        }
        let (name, rest) = split_name(line);
        if !valid_metric_name(name) {
            return Err(at(format!("{name:?} is not a valid metric name")));
        }
        let (labels, rest) = if let Some(inside) = rest.strip_prefix('{') {
            parse_labels(inside).map_err(at)?
        } else {
            (Vec::new(), rest)
        };
        let mut fields = rest.split_whitespace();
        let value = fields.next().ok_or_else(|| at("no value".to_owned()))?;
        let value = parse_value(value).ok_or_else(|| at(format!("{value:?} is not a number")))?;
        if fields.next().is_some() {
            return Err(at("timestamps are not supported".to_owned()));
        }
        if labels.len() > MAX_LABELS {
            return Err(at(format!("more than {MAX_LABELS} labels")));
        }
        lines.push(Line {
            counter: counter(&types, name),
            name: name.to_owned(),
            labels: labels.into_iter().filter(|(l, _)| l != "host").collect(),
            value,
        });
    }
    Ok(lines)
}

/// Whether `name` is a counter by the `# TYPE` lines seen so far.
fn counter(types: &HashMap<&str, &str>, name: &str) -> bool {
    if types.get(name) == Some(&"counter") {
        return true;
    }
    ["_bucket", "_count", "_sum"].iter().any(|suffix| {
        name.strip_suffix(suffix)
            .and_then(|family| types.get(family))
            .is_some_and(|kind| *kind == "histogram" || *kind == "summary")
    })
}

/// The metric name at the start of `line`, and the rest.
fn split_name(line: &str) -> (&str, &str) {
    let end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .unwrap_or(line.len());
    (&line[..end], line[end..].trim_start())
}

/// Label pairs of a sample.
type Labels = Vec<(String, String)>;

/// The labels after a `{`, and what follows the closing `}`.
fn parse_labels(text: &str) -> Result<(Labels, &str), String> {
    let mut labels: Labels = Vec::new();
    let mut rest = text.trim_start();
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        let (name, after) = rest
            .split_once('=')
            .ok_or_else(|| "a label without a value".to_owned())?;
        let name = name.trim();
        if !valid_label_name(name) || name.starts_with("__") {
            return Err(format!("{name:?} is not a valid label name"));
        }
        if labels.iter().any(|(existing, _)| existing == name) {
            return Err(format!("label {name:?} repeated"));
        }
        let quoted = after
            .trim_start()
            .strip_prefix('"')
            .ok_or_else(|| format!("the value of {name:?} is not quoted"))?;
        let mut value = String::new();
        let mut chars = quoted.char_indices();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => value.push(c),
                    Some((_, c)) => {
                        value.push('\\');
                        value.push(c);
                    }
                    None => return Err(format!("the value of {name:?} is not closed")),
                },
                Some((_, c)) => value.push(c),
                None => return Err(format!("the value of {name:?} is not closed")),
            }
        };
        labels.push((name.to_owned(), value));
        rest = quoted[end + 1..].trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
}

/// A sample value: a float, `NaN`, `+Inf` or `-Inf`.
fn parse_value(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ if text
            .bytes()
            .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b)) =>
        {
            text.parse().ok()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::Kind;

    const FILE: &str = "# HELP backup_last_success_seconds When the backup last succeeded.\n\
        # TYPE backup_last_success_seconds gauge\n\
        backup_last_success_seconds{job=\"db\", target=\"/var/lib/db\"} 1.7e9\n\
        # TYPE backup_runs_total counter\n\
        backup_runs_total 42\n\
        # TYPE backup_duration_seconds histogram\n\
        backup_duration_seconds_bucket{le=\"+Inf\",} 42\n\
        backup_duration_seconds_sum 1200.5\n\
        weird_labels{path=\"C:\\\\dir\",quote=\"say \\\"hi\\\"\",nl=\"a\\nb\",host=\"elsewhere\"} NaN\n";

    #[test]
    fn kinds_labels_and_escapes() {
        let lines = parse(Path::new("f.prom"), FILE).expect("parses");
        let summary: Vec<(&str, bool)> =
            lines.iter().map(|l| (l.name.as_str(), l.counter)).collect();
        assert_eq!(
            summary,
            [
                ("backup_last_success_seconds", false),
                ("backup_runs_total", true),
                ("backup_duration_seconds_bucket", true),
                ("backup_duration_seconds_sum", true),
                ("weird_labels", false),
            ]
        );
        assert_eq!(lines[0].value, 1.7e9);
        assert_eq!(
            lines[0].labels,
            [
                ("job".to_owned(), "db".to_owned()),
                ("target".to_owned(), "/var/lib/db".to_owned())
            ]
        );
        assert_eq!(lines[2].labels, [("le".to_owned(), "+Inf".to_owned())]);
        assert!(lines[4].value.is_nan());
        assert_eq!(
            lines[4].labels,
            [
                ("path".to_owned(), "C:\\dir".to_owned()),
                ("quote".to_owned(), "say \"hi\"".to_owned()),
                ("nl".to_owned(), "a\nb".to_owned()),
            ],
            "host is dropped"
        );
    }

    #[test]
    fn hostile_lines_are_errors_not_panics() {
        for text in [
            "no_value\n",
            "bad-name 1\n",
            "m{l=\"v\" 1\n",
            "m{l=v} 1\n",
            "m{l=\"v\",l=\"w\"} 1\n",
            "m{__name__=\"x\"} 1\n",
            "m{l=\"unterminated} 1\n",
            "m{l=\"v\\",
            "m 1 1700000000000\n",
            "m one\n",
            "m 0x10\n",
            "{l=\"v\"} 1\n",
            "m{=\"v\"} 1\n",
        ] {
            assert!(parse(Path::new("f.prom"), text).is_err(), "{text:?}");
        }
        let many: String = (0..=MAX_LABELS).map(|i| format!("l{i}=\"v\",")).collect();
        assert!(parse(Path::new("f.prom"), &format!("m{{{many}}} 1\n")).is_err());
    }

    #[test]
    fn a_bad_file_is_left_out_and_flagged_the_others_read() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("a.prom"), FILE).expect("write");
        std::fs::write(dir.path().join("b.prom"), "broken{ 1\n").expect("write");
        std::fs::write(dir.path().join("c.txt"), "ignored 1\n").expect("write");
        let mut config = AgentConfig::default();
        let flag = |config: &AgentConfig| {
            let mut out = Samples::new("h");
            collect(config, &mut out);
            out.into_vec()
        };
        // No directory: node_exporter's default, the flag alone.
        let samples = flag(&config);
        assert_eq!(samples.len(), 1);
        assert_eq!(samples[0].name, "node_textfile_scrape_error");
        assert_eq!(samples[0].value, 0.0);

        config.textfile_directory = Some(dir.path().to_path_buf());
        let samples = flag(&config);
        let error = samples
            .iter()
            .find(|s| s.name == "node_textfile_scrape_error")
            .expect("flag");
        assert_eq!(error.value, 1.0);
        let runs = samples
            .iter()
            .find(|s| s.name == "backup_runs_total")
            .expect("a.prom read");
        assert_eq!((runs.value, runs.kind), (42.0, Kind::Counter));
        let mtimes: Vec<&str> = samples
            .iter()
            .filter(|s| s.name == "node_textfile_mtime_seconds")
            .filter_map(|s| s.label("file"))
            .collect();
        assert_eq!(mtimes.len(), 1);
        assert!(mtimes[0].ends_with("a.prom"), "{mtimes:?}");
        assert!(samples.iter().all(|s| s.name != "ignored"));

        std::fs::remove_file(dir.path().join("b.prom")).expect("remove");
        let samples = flag(&config);
        assert_eq!(
            samples
                .iter()
                .find(|s| s.name == "node_textfile_scrape_error")
                .map(|s| s.value),
            Some(0.0)
        );
        // A directory that does not exist is an error, as in node_exporter.
        config.textfile_directory = Some(dir.path().join("absent"));
        let samples = flag(&config);
        assert_eq!(samples[0].value, 1.0);
    }
}
