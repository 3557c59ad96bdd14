//! The running kernel, from `uname(2)`: node_exporter's `node_uname_info`, whose `nodename` and `instance` the
//! "Node Exporter Full" dashboard lists hosts by.

use crate::sample::Samples;

/// Emits `node_uname_info{sysname,release,version,machine,nodename,domainname}` 1.
pub(crate) fn collect(out: &mut Samples) {
    let uname = rustix::system::uname();
    let text = |field: &std::ffi::CStr| field.to_string_lossy().into_owned();
    let fields = [
        ("domainname", text(uname.domainname())),
        ("machine", text(uname.machine())),
        ("nodename", text(uname.nodename())),
        ("release", text(uname.release())),
        ("sysname", text(uname.sysname())),
        ("version", text(uname.version())),
    ];
    let labels: Vec<(&str, &str)> = fields
        .iter()
        .map(|(name, value)| (*name, value.as_str()))
        .collect();
    out.gauge("node_uname_info", &labels, 1.0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_info_series_with_the_six_fields() {
        let mut out = Samples::new("h");
        collect(&mut out);
        let samples = out.into_vec();
        assert_eq!(samples.len(), 1);
        assert_eq!(samples[0].value, 1.0);
        assert_eq!(samples[0].label("sysname"), Some("Linux"));
        for label in ["domainname", "machine", "nodename", "release", "version"] {
            assert!(samples[0].label(label).is_some(), "{label}");
        }
    }
}
