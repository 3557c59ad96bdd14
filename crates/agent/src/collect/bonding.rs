//! Bonded network interfaces, from `{sys_root}/class/net/bonding_masters` and each bond's slaves, as
//! node_exporter's `bonding` collector reports them.
//!
//! Without the bonding driver there is no `bonding_masters`: no series, and no error.

use crate::config::AgentConfig;
use crate::error::Error;
use crate::sample::Samples;

use super::{read, read_optional};

/// Whether `name`, read from a sysfs file, is safe as one path component.
fn plain(name: &str) -> bool {
    !name.is_empty() && !name.starts_with('.') && !name.contains('/')
}

/// Emits `node_bonding_slaves{master}` and `node_bonding_active{master}` (slaves whose MII status is `up`). A bond
/// whose files cannot be read is left out and reported as the error; the other bonds still are.
pub(crate) fn collect(config: &AgentConfig, out: &mut Samples) -> Result<(), Error> {
    let Some(masters) = read_optional(&config.sys_path("class/net/bonding_masters"))? else {
        return Ok(());
    };
    let mut failure = None;
    for master in masters.split_whitespace().filter(|name| plain(name)) {
        match bond(config, master) {
            Ok((slaves, active)) => {
                out.gauge("node_bonding_slaves", &[("master", master)], slaves as f64);
                out.gauge("node_bonding_active", &[("master", master)], active as f64);
            }
            Err(error) => {
                failure.get_or_insert(error);
            }
        }
    }
    failure.map_or(Ok(()), Err)
}

/// Slaves of `master` and how many of them are up.
fn bond(config: &AgentConfig, master: &str) -> Result<(u64, u64), Error> {
    let slaves = read(&config.sys_path(format!("class/net/{master}/bonding/slaves")))?;
    let (mut total, mut up) = (0, 0);
    for slave in slaves.split_whitespace().filter(|name| plain(name)) {
        // `lower_<slave>` on current kernels, `slave_<slave>` on older ones.
        let status = |prefix: &str| {
            config.sys_path(format!(
                "class/net/{master}/{prefix}_{slave}/bonding_slave/mii_status"
            ))
        };
        let state = match read_optional(&status("lower"))? {
            Some(state) => state,
            None => read(&status("slave"))?,
        };
        total += 1;
        if state.trim() == "up" {
            up += 1;
        }
    }
    Ok((total, up))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &std::path::Path, relative: &str, text: &str) {
        let path = root.join(relative);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }

    #[test]
    fn slaves_and_active_slaves_per_bond_old_and_new_layouts() {
        let dir = tempfile::tempdir().expect("temp dir");
        let sys = dir.path();
        let config = AgentConfig {
            sys_root: sys.to_path_buf(),
            ..AgentConfig::default()
        };
        let mut out = Samples::new("h");
        collect(&config, &mut out).expect("no bonding driver is fine");
        assert!(out.into_vec().is_empty());

        write(sys, "class/net/bonding_masters", "bond0 bond1 ../etc\n");
        write(sys, "class/net/bond0/bonding/slaves", "eth0 eth1\n");
        write(
            sys,
            "class/net/bond0/lower_eth0/bonding_slave/mii_status",
            "up\n",
        );
        write(
            sys,
            "class/net/bond0/lower_eth1/bonding_slave/mii_status",
            "down\n",
        );
        write(sys, "class/net/bond1/bonding/slaves", "eth2\n");
        write(
            sys,
            "class/net/bond1/slave_eth2/bonding_slave/mii_status",
            "up\n",
        );
        let mut out = Samples::new("h");
        collect(&config, &mut out).expect("collects");
        let got: Vec<(String, Option<String>, f64)> = out
            .into_vec()
            .into_iter()
            .map(|s| {
                (
                    s.name.clone(),
                    s.label("master").map(str::to_owned),
                    s.value,
                )
            })
            .collect();
        let want = |name: &str, master: &str, value: f64| {
            (name.to_owned(), Some(master.to_owned()), value)
        };
        assert_eq!(
            got,
            [
                want("node_bonding_slaves", "bond0", 2.0),
                want("node_bonding_active", "bond0", 1.0),
                want("node_bonding_slaves", "bond1", 1.0),
                want("node_bonding_active", "bond1", 1.0),
            ]
        );

        // A bond whose slave list is gone: an error, the other bond still reported.
        std::fs::remove_file(sys.join("class/net/bond0/bonding/slaves")).expect("remove");
        let mut out = Samples::new("h");
        assert!(collect(&config, &mut out).is_err());
        assert_eq!(out.into_vec().len(), 2);
    }
}
