// The mixin's settings. Override any of them when you import the mixin:
//
//   (import 'balance-exporter-mixin/mixin.libsonnet') + {
//     _config+:: {
//       exporterSelector: 'job="payments-balances", namespace="payments"',
//       runbookURLPattern: 'https://wiki.example.com/runbooks/balance_exporter#%s',
//       dashboardURLPattern: 'https://grafana.example.com/d/%(uid)s?var-supplier=%(supplier)s',
//       alerts+: { 'SupplierBalanceLow:warning'+: { 'for': '30m' } },
//     },
//   }
{
  _config+:: {
    // PromQL label matchers (without braces) selecting the exporter's own series. Every
    // selector of an exporter metric (supplier_*, balance_exporter_*, up) in the rules
    // and dashboards carries it. Recorded series (supplier:...) keep the labels of their
    // sources and are selected by name.
    exporterSelector: 'job="balance_exporter"',

    // Each alert's runbook_url: %s is the alert name in lower case, which is the anchor
    // of its section in alerts/runbook.md.
    runbookURLPattern: 'https://github.com/balance-exporter/balance_exporter/blob/main/alerts/runbook.md#%s',

    // When not empty, each alert gets a dashboard_url annotation: %(uid)s is the uid of
    // the dashboard that shows the alert (supplier detail for balance, spend and frozen
    // alerts; exporter health for poll and exporter alerts), %(supplier)s the alert's
    // supplier as a template ('{{ $labels.supplier }}', or '$__all' for exporter-wide
    // alerts). Empty by default: the Grafana address is yours.
    dashboardURLPattern: '',

    // The dashboards' uids (dashboards/*.json), also used in dashboard_url.
    dashboardUIDs: {
      overview: 'balance-exporter-overview',
      supplier: 'balance-exporter-supplier',
      health: 'balance-exporter-health',
    },

    // Per alert and shipped severity ('<alertname>:<severity>', since some alerts come
    // at two severities): how long the condition must hold (for:) and the severity
    // label it is sent with (alerts/alertmanager.example.yml routes on severity).
    alerts: {
      'SupplierBalanceLow:warning': { 'for': '10m', severity: 'warning' },
      'SupplierBalanceLow:critical': { 'for': '5m', severity: 'critical' },
      'SupplierBalanceRunwayShort:warning': { 'for': '30m', severity: 'warning' },
      'SupplierBalanceRunwayShort:critical': { 'for': '30m', severity: 'critical' },
      'SupplierBalanceRunsOutBeforeTopUp:warning': { 'for': '30m', severity: 'warning' },
      'BalanceExporterDown:critical': { 'for': '5m', severity: 'critical' },
      'BalanceExporterAbsent:critical': { 'for': '5m', severity: 'critical' },
      'BalanceExporterConfigReloadFailed:warning': { 'for': '10m', severity: 'warning' },
      'BalanceExporterStateWriteFailing:warning': { 'for': '5m', severity: 'warning' },
      'SupplierBalanceFrozenHigh:warning': { 'for': '45m', severity: 'warning' },
      'SupplierBalanceStale:warning': { 'for': '5m', severity: 'warning' },
      'SupplierPollsFailing:warning': { 'for': '3m', severity: 'warning' },
      'SupplierPollAuthFailing:warning': { 'for': '3m', severity: 'warning' },
      'SupplierPollerStuck:warning': { 'for': '3m', severity: 'warning' },
      'SupplierBalanceNotUpdating:warning': { 'for': '15m', severity: 'warning' },
      'SupplierBalanceSpendBurst:critical': { 'for': '2m', severity: 'critical' },
      'SupplierBalanceDuplicateDebits:warning': { 'for': '0m', severity: 'warning' },
    },
  },
}
