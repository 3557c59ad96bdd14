//! Protocol statistics, from `{proc_root}/net/netstat`, `{proc_root}/net/snmp` and `{proc_root}/net/snmp6`, as
//! node_exporter's `netstat` collector names them (`node_netstat_<Protocol>_<Field>`), limited to the fields its
//! `--collector.netstat.fields` default selects.
//!
//! `snmp6` is absent when IPv6 is disabled: its series are, and that is no error.

use std::path::Path;

use crate::config::AgentConfig;
use crate::error::Error;
use crate::sample::Samples;

use super::{Skipped, read, read_optional};

/// The selected fields that are levels rather than counts since boot: gauges. node_exporter exports every netstat
/// field untyped; the others are counters here, as the agent does for `vmstat`.
const GAUGES: [&str; 2] = ["Ip_Forwarding", "Tcp_CurrEstab"];

/// Whether node_exporter exports `<protocol>_<field>` by default: its `--collector.netstat.fields` pattern, written
/// out (a test checks it against the pattern itself, on every field of the fixtures and of the machine's files) so
/// that the ~300 fields of a cycle cost neither a regex engine nor an allocation.
pub(crate) fn exported(protocol: &str, field: &str) -> bool {
    // `.*_(InErrors|InErrs)`: the whole key ends so, even when the field holds more underscores.
    if field == "InErrors"
        || field == "InErrs"
        || field.ends_with("_InErrors")
        || field.ends_with("_InErrs")
    {
        return true;
    }
    match protocol {
        "Ip" => field == "Forwarding",
        "Ip6" | "IpExt" => matches!(field, "InOctets" | "OutOctets"),
        "Icmp" | "Icmp6" => matches!(field, "InMsgs" | "OutMsgs"),
        "TcpExt" => {
            field.starts_with("Listen")
                || field.starts_with("Syncookies")
                || matches!(
                    field,
                    "TCPSynRetrans" | "TCPTimeouts" | "TCPOFOQueue" | "TCPRcvQDrop"
                )
        }
        "Tcp" => matches!(
            field,
            "ActiveOpens"
                | "InSegs"
                | "OutSegs"
                | "OutRsts"
                | "PassiveOpens"
                | "RetransSegs"
                | "CurrEstab"
        ),
        "Udp" | "Udp6" => matches!(
            field,
            "InDatagrams" | "OutDatagrams" | "NoPorts" | "RcvbufErrors" | "SndbufErrors"
        ),
        _ => false,
    }
}

/// Emits `node_netstat_<Protocol>_<Field>` for the [`exported`] fields of the three files.
pub(crate) fn collect(config: &AgentConfig, out: &mut Samples) -> Result<(), Error> {
    let mut skipped = Skipped::default();
    let mut fields = Vec::new();
    for file in ["net/netstat", "net/snmp"] {
        let path = config.proc_path(file);
        fields.extend(parse_tables(&path, &read(&path)?, &mut skipped));
    }
    let snmp6 = config.proc_path("net/snmp6");
    if let Some(text) = read_optional(&snmp6)? {
        fields.extend(parse_snmp6(&snmp6, &text, &mut skipped));
    }
    for (key, value) in fields {
        let name = format!("node_netstat_{key}");
        if GAUGES.contains(&key.as_str()) {
            out.gauge(&name, &[], value);
        } else {
            out.counter(&name, &[], value);
        }
    }
    skipped.finish()
}

/// The [`exported`] fields of `netstat` or `snmp`: pairs of lines, `Proto: Name ...` then `Proto: value ...`. A
/// pair whose lines disagree (a different protocol, another number of fields) or a selected value that is not a
/// number is noted in `skipped` and left out; unselected values are not read.
pub(crate) fn parse_tables(path: &Path, text: &str, skipped: &mut Skipped) -> Vec<(String, f64)> {
    let mut fields = Vec::new();
    let mut header: Option<(&str, Vec<&str>)> = None;
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        let mut words = line.split_whitespace();
        let Some(protocol) = words.next().and_then(|word| word.strip_suffix(':')) else {
            skipped.note(path, format!("a line without a protocol: {line:?}"));
            header = None;
            continue;
        };
        let Some((names_of, names)) = header.take() else {
            header = Some((protocol, words.collect()));
            continue;
        };
        if names_of != protocol {
            skipped.note(path, format!("{names_of}: names without values"));
            header = Some((protocol, words.collect()));
            continue;
        }
        let values: Vec<&str> = words.collect();
        if values.len() != names.len() {
            skipped.note(
                path,
                format!("{protocol}: {} names, {} values", names.len(), values.len()),
            );
            continue;
        }
        for (name, value) in names.into_iter().zip(values) {
            push_selected(path, protocol, name, value, &mut fields, skipped);
        }
    }
    if let Some((protocol, _)) = header {
        skipped.note(path, format!("{protocol}: names without values"));
    }
    fields
}

/// The [`exported`] fields of `snmp6`: lines of `<Protocol6><Field> value`, the protocol ending at the first `6`
/// (`Icmp6InMsgs` is `Icmp6_InMsgs`); names without a `6` are ignored, as node_exporter does, and a name without
/// a value is noted in `skipped`.
pub(crate) fn parse_snmp6(path: &Path, text: &str, skipped: &mut Skipped) -> Vec<(String, f64)> {
    let mut fields = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let Some(key) = words.next() else { continue };
        let Some(value) = words.next() else {
            skipped.note(path, format!("{key:?} without a value"));
            continue;
        };
        let Some(six) = key.find('6') else { continue };
        let (protocol, name) = key.split_at(six + 1);
        push_selected(path, protocol, name, value, &mut fields, skipped);
    }
    fields
}

/// Pushes `<protocol>_<name>` with `value` when [`exported`]; a value that is not a number is noted instead.
fn push_selected(
    path: &Path,
    protocol: &str,
    name: &str,
    value: &str,
    fields: &mut Vec<(String, f64)>,
    skipped: &mut Skipped,
) {
    if !exported(protocol, name) {
        return;
    }
    let key = format!("{protocol}_{name}");
    match value.parse::<f64>() {
        Ok(value) if value.is_finite() => fields.push((key, value)),
        _ => skipped.note(path, format!("{key}: {value:?} is not a number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::{Kind, Sample};

    const NETSTAT: &str = "\
TcpExt: SyncookiesSent SyncookiesRecv SyncookiesFailed EmbryonicRsts ListenOverflows ListenDrops TCPTimeouts TCPSynRetrans TCPOFOQueue TCPRcvQDrop TCPLostRetransmit
TcpExt: 1 2 3 4 5 6 7 8 9 10 11
IpExt: InNoRoutes InOctets OutOctets InCsumErrors
IpExt: 0 123456789 987654321 0
";
    const SNMP: &str = "\
Ip: Forwarding DefaultTTL InReceives InHdrErrors
Ip: 1 64 1000 2
Icmp: InMsgs InErrors InCsumErrors OutMsgs
Icmp: 45 1 0 46
Tcp: RtoAlgorithm MaxConn ActiveOpens PassiveOpens CurrEstab InSegs OutSegs RetransSegs InErrs OutRsts
Tcp: 1 -1 100 200 7 3000 4000 50 3 60
Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors IgnoredMulti
Udp: 500 6 2 700 1 0 9
UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors IgnoredMulti
UdpLite: 0 0 0 0 0 0 0
";
    const SNMP6: &str = "\
Ip6InReceives                   	12
Ip6InOctets                     	34000
Ip6OutOctets                    	56000
Icmp6InMsgs                     	7
Icmp6InErrors                   	1
Icmp6OutMsgs                    	8
Icmp6InType1                    	2
Udp6InDatagrams                 	9
Udp6NoPorts                     	0
Udp6InErrors                    	0
Udp6OutDatagrams                	10
Udp6RcvbufErrors                	0
Udp6SndbufErrors                	0
UdpLite6InErrors                	0
";

    fn collect_files(files: &[(&str, &str)]) -> (Vec<Sample>, Result<(), Error>) {
        super::super::collect_fake_proc("net", files, collect)
    }

    fn get(samples: &[Sample], name: &str) -> Option<(f64, Kind)> {
        samples
            .iter()
            .find(|s| s.name == name)
            .map(|s| (s.value, s.kind))
    }

    /// node_exporter's default `--collector.netstat.fields`, as its source writes it.
    const NODE_EXPORTER_FIELDS: &str = "^(.*_(InErrors|InErrs)|Ip_Forwarding|Ip(6|Ext)_(InOctets|OutOctets)|Icmp6?_(InMsgs|OutMsgs)|TcpExt_(Listen.*|Syncookies.*|TCPSynRetrans|TCPTimeouts|TCPOFOQueue|TCPRcvQDrop)|Tcp_(ActiveOpens|InSegs|OutSegs|OutRsts|PassiveOpens|RetransSegs|CurrEstab)|Udp6?_(InDatagrams|OutDatagrams|NoPorts|RcvbufErrors|SndbufErrors))$";

    #[test]
    fn the_default_field_pattern_of_node_exporter() {
        let pattern = regex::Regex::new(NODE_EXPORTER_FIELDS).expect("the pattern compiles");
        // Every field of the fixtures and of this machine's files, and keys made to probe the pattern's edges.
        let mut keys: Vec<(String, String)> = Vec::new();
        for (file, text) in [
            ("netstat", NETSTAT.to_owned()),
            ("snmp", SNMP.to_owned()),
            ("snmp6", SNMP6.to_owned()),
            (
                "netstat",
                std::fs::read_to_string("/proc/net/netstat").unwrap_or_default(),
            ),
            (
                "snmp",
                std::fs::read_to_string("/proc/net/snmp").unwrap_or_default(),
            ),
            (
                "snmp6",
                std::fs::read_to_string("/proc/net/snmp6").unwrap_or_default(),
            ),
        ] {
            for line in text.lines() {
                let mut words = line.split_whitespace();
                let Some(first) = words.next() else { continue };
                match first.strip_suffix(':') {
                    Some(protocol) => {
                        keys.extend(words.map(|field| (protocol.to_owned(), field.to_owned())))
                    }
                    None if file == "snmp6" => {
                        if let Some(six) = first.find('6') {
                            let (protocol, field) = first.split_at(six + 1);
                            keys.push((protocol.to_owned(), field.to_owned()));
                        }
                    }
                    None => {}
                }
            }
        }
        for (protocol, field) in [
            ("", "InErrors"),
            ("A", "B_InErrs"),
            ("X", "InErrorsX"),
            ("Ip", "ForwardingX"),
            ("XIp", "Forwarding"),
            ("Ip", "InOctets"),
            ("IpExt", "InOctets_"),
            ("Icmp7", "InMsgs"),
            ("TcpExt", "Listen"),
            ("TcpExt", "Listen_Anything"),
            ("TcpExt", "SyncookiesX"),
            ("TcpExt", "XListenDrops"),
            ("Tcp", "TCPTimeouts"),
            ("Tcp", "InSegs_"),
            ("Udp6", "NoPorts"),
            ("UdpLite", "NoPorts"),
            ("UdpLite6", "InErrors"),
        ] {
            keys.push((protocol.to_owned(), field.to_owned()));
        }
        assert!(keys.len() > 40, "{}", keys.len());
        let mut selected = 0;
        for (protocol, field) in &keys {
            let key = format!("{protocol}_{field}");
            assert_eq!(exported(protocol, field), pattern.is_match(&key), "{key}");
            selected += usize::from(exported(protocol, field));
        }
        assert!(selected > 20, "{selected}");
    }

    #[test]
    fn selected_fields_of_the_three_files() {
        let (samples, result) =
            collect_files(&[("netstat", NETSTAT), ("snmp", SNMP), ("snmp6", SNMP6)]);
        result.expect("parses");
        let counter = |value: f64| Some((value, Kind::Counter));
        assert_eq!(
            get(&samples, "node_netstat_TcpExt_SyncookiesSent"),
            counter(1.0)
        );
        assert_eq!(
            get(&samples, "node_netstat_TcpExt_TCPRcvQDrop"),
            counter(10.0)
        );
        assert_eq!(
            get(&samples, "node_netstat_IpExt_InOctets"),
            counter(123_456_789.0)
        );
        assert_eq!(get(&samples, "node_netstat_Tcp_InErrs"), counter(3.0));
        assert_eq!(get(&samples, "node_netstat_Udp_RcvbufErrors"), counter(1.0));
        assert_eq!(
            get(&samples, "node_netstat_Ip6_InOctets"),
            counter(34_000.0)
        );
        assert_eq!(get(&samples, "node_netstat_Icmp6_InErrors"), counter(1.0));
        assert_eq!(
            get(&samples, "node_netstat_UdpLite6_InErrors"),
            counter(0.0)
        );
        assert_eq!(
            get(&samples, "node_netstat_Tcp_CurrEstab"),
            Some((7.0, Kind::Gauge))
        );
        assert_eq!(
            get(&samples, "node_netstat_Ip_Forwarding"),
            Some((1.0, Kind::Gauge))
        );
        for absent in [
            "node_netstat_Tcp_MaxConn",
            "node_netstat_TcpExt_TCPLostRetransmit",
            "node_netstat_Ip6_InReceives",
            "node_netstat_Icmp6_InType1",
        ] {
            assert_eq!(get(&samples, absent), None, "{absent}");
        }
        // TcpExt 9 + IpExt 2 + Ip 1 + Icmp 3 + Tcp 8 + Udp 6 + UdpLite 1 + snmp6 12.
        assert_eq!(samples.len(), 42);
    }

    #[test]
    fn without_ipv6_there_are_no_snmp6_series_and_no_error() {
        let (samples, result) = collect_files(&[("netstat", NETSTAT), ("snmp", SNMP)]);
        result.expect("parses");
        assert_eq!(samples.len(), 30);
        assert!(samples.iter().all(|s| !s.name.contains('6')));
    }

    #[test]
    fn a_truncated_or_garbled_file_skips_what_it_cannot_read() {
        // snmp cut in the middle of the Tcp values, a value that is not a number, netstat's last header alone.
        let snmp = "Ip: Forwarding DefaultTTL\nIp: 2 64\nIcmp: InMsgs OutMsgs\nIcmp: x 46\n\
                    Tcp: ActiveOpens PassiveOpens CurrEstab\nTcp: 100 20";
        let netstat = "TcpExt: ListenDrops\nTcpExt: 6\nIpExt: InOctets OutOctets\n";
        let (samples, result) = collect_files(&[
            ("netstat", netstat),
            ("snmp", snmp),
            ("snmp6", "Ip6InOctets\nIcmp6InMsgs 5\n\u{0}\u{1}"),
        ]);
        let error = result.expect_err("reported").to_string();
        assert!(error.contains("and 4 more"), "{error}");
        let mut names: Vec<&str> = samples.iter().map(|s| s.name.as_str()).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "node_netstat_Icmp6_InMsgs",
                "node_netstat_Icmp_OutMsgs",
                "node_netstat_Ip_Forwarding",
                "node_netstat_TcpExt_ListenDrops",
            ]
        );
        // Without snmp, a file every kernel with IPv4 has, the subsystem fails.
        let (_, result) = collect_files(&[("netstat", NETSTAT)]);
        assert!(result.is_err());
    }
}
