// balance_exporter monitoring mixin: alert and recording rules and Grafana dashboards
// for balance_exporter, with the settings in config.libsonnet.
//
//   prometheusAlerts   the alerting rule groups   (alerts/{balance,exporter,frozen,polls,spend}.rules.yml)
//   prometheusRules    the recording rule groups  (alerts/recording.rules.yml)
//   grafanaDashboards  the dashboards, by file name (dashboards/*.json)
//
// mixin/generate.sh renders the committed files from here; edit this folder, not them.
local ruleFileOrder = [
  'balance.rules.yml',
  'exporter.rules.yml',
  'frozen.rules.yml',
  'polls.rules.yml',
  'recording.rules.yml',
  'spend.rules.yml',
];
local isAlertGroup(g) = std.length([r for r in g.rules if std.objectHas(r, 'alert')]) > 0;

(import 'config.libsonnet')
+ (import 'lib/alert.libsonnet')
+ (import 'rules/balance.libsonnet')
+ (import 'rules/exporter.libsonnet')
+ (import 'rules/frozen.libsonnet')
+ (import 'rules/polls.libsonnet')
+ (import 'rules/recording.libsonnet')
+ (import 'rules/spend.libsonnet')
+ (import 'dashboards/exporter-health.libsonnet')
+ (import 'dashboards/supplier-balances-overview.libsonnet')
+ (import 'dashboards/supplier-detail.libsonnet')
+ {
  // The rule groups as the shipped files hold them (file name -> {header, groups}).
  ruleFileOrder:: ruleFileOrder,

  prometheusAlerts+:: {
    groups+: [g for f in ruleFileOrder for g in $.ruleFiles[f].groups if isAlertGroup(g)],
  },
  prometheusRules+:: {
    groups+: [g for f in ruleFileOrder for g in $.ruleFiles[f].groups if !isAlertGroup(g)],
  },
}
