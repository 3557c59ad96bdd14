//! Virtual memory statistics, from `{proc_root}/vmstat`: the fields node_exporter's `vmstat` collector exports by
//! default (`--collector.vmstat.fields`, `^(oom_kill|pgpg|pswp|pg.*fault).*`).

use crate::config::AgentConfig;
use crate::error::Error;
use crate::sample::Samples;

use super::{number, read};

/// Whether node_exporter exports the `vmstat` field `name` by default.
pub(crate) fn exported(name: &str) -> bool {
    ["oom_kill", "pgpg", "pswp"]
        .iter()
        .any(|prefix| name.starts_with(prefix))
        || name
            .strip_prefix("pg")
            .is_some_and(|rest| rest.contains("fault"))
}

/// Emits `node_vmstat_<field>` for the fields [`exported`] picks: counts since boot, counters here (node_exporter
/// exports them untyped).
pub(crate) fn collect(config: &AgentConfig, out: &mut Samples) -> Result<(), Error> {
    let path = config.proc_path("vmstat");
    let text = read(&path)?;
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let (Some(name), Some(value)) = (fields.next(), fields.next()) else {
            continue;
        };
        if !exported(name) || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            continue;
        }
        let value: u64 = number(&path, name, value)?;
        out.counter(&format!("node_vmstat_{name}"), &[], value as f64);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_fields_of_node_exporter() {
        for name in [
            "oom_kill",
            "pgpgin",
            "pgpgout",
            "pswpin",
            "pswpout",
            "pgfault",
            "pgmajfault",
        ] {
            assert!(exported(name), "{name}");
        }
        for name in [
            "nr_free_pages",
            "pgfree",
            "pgsteal_kswapd",
            "workingset_refault_anon",
        ] {
            assert!(!exported(name), "{name}");
        }
    }

    #[test]
    fn counts_of_the_chosen_fields_and_errors_for_garbage() {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = AgentConfig {
            proc_root: dir.path().to_path_buf(),
            ..AgentConfig::default()
        };
        std::fs::write(
            dir.path().join("vmstat"),
            "nr_free_pages 3093599\npgpgin 113946225\npgmajfault 161516\nlonely\npgfault 653510033\n",
        )
        .expect("write");
        let mut out = Samples::new("h");
        collect(&config, &mut out).expect("parses");
        let got: Vec<(String, f64)> = out
            .into_vec()
            .into_iter()
            .map(|s| (s.name, s.value))
            .collect();
        assert_eq!(
            got,
            [
                ("node_vmstat_pgpgin".to_owned(), 113_946_225.0),
                ("node_vmstat_pgmajfault".to_owned(), 161_516.0),
                ("node_vmstat_pgfault".to_owned(), 653_510_033.0),
            ]
        );
        std::fs::write(dir.path().join("vmstat"), "pgmajfault lots\n").expect("write");
        assert!(collect(&config, &mut Samples::new("h")).is_err());
    }
}
