// GoMon's entry point into the vendored node-mixin files: the mixin's configuration, alerts and recording rules
// (the dashboards need grafonnet and are not vendored), as {alerts: [...], rules: [...]}.
local mixin = (import 'config.libsonnet') + (import 'alerts/alerts.libsonnet') + (import 'rules/rules.libsonnet');
{
  alerts: std.flattenArrays([group.rules for group in mixin.prometheusAlerts.groups]),
  rules: std.flattenArrays([group.rules for group in mixin.prometheusRules.groups]),
}
