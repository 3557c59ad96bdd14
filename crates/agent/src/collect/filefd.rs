//! Kernel file handles, from `{proc_root}/sys/fs/file-nr`, as node_exporter's `filefd` collector reports them.

use crate::config::AgentConfig;
use crate::error::Error;
use crate::sample::Samples;

use super::{number, read};

/// Emits `node_filefd_allocated` and `node_filefd_maximum`: the first and third numbers of `file-nr` (the second,
/// free handles, has been 0 since Linux 2.6).
pub(crate) fn collect(config: &AgentConfig, out: &mut Samples) -> Result<(), Error> {
    let path = config.proc_path("sys/fs/file-nr");
    let text = read(&path)?;
    let fields: Vec<&str> = text.split_whitespace().collect();
    let [allocated, _, maximum, ..] = fields.as_slice() else {
        return Err(Error::parse(
            &path,
            format!("{} numbers, expected 3", fields.len()),
        ));
    };
    let allocated: u64 = number(&path, "allocated", allocated)?;
    let maximum: u64 = number(&path, "maximum", maximum)?;
    out.gauge("node_filefd_allocated", &[], allocated as f64);
    out.gauge("node_filefd_maximum", &[], maximum as f64);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect_text(text: &str) -> Result<Vec<(String, f64)>, Error> {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("sys/fs")).expect("mkdir");
        std::fs::write(dir.path().join("sys/fs/file-nr"), text).expect("write");
        let config = AgentConfig {
            proc_root: dir.path().to_path_buf(),
            ..AgentConfig::default()
        };
        let mut out = Samples::new("h");
        collect(&config, &mut out)?;
        Ok(out
            .into_vec()
            .into_iter()
            .map(|s| (s.name, s.value))
            .collect())
    }

    #[test]
    fn allocated_and_maximum_skip_the_unused_count() {
        assert_eq!(
            collect_text("1024\t0\t1631329\n").expect("parses"),
            [
                ("node_filefd_allocated".to_owned(), 1024.0),
                ("node_filefd_maximum".to_owned(), 1_631_329.0),
            ]
        );
        // file-max may be LONG_MAX.
        let max = collect_text("5 0 9223372036854775807").expect("parses");
        assert_eq!(max[1].1, 9_223_372_036_854_775_807_u64 as f64);
    }

    #[test]
    fn short_or_garbled_files_are_errors() {
        assert!(collect_text("1024 0\n").is_err());
        assert!(collect_text("").is_err());
        assert!(collect_text("many 0 5\n").is_err());
    }
}
