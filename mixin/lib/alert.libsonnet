// How an alert is built from its rule: for: and severity from _config.alerts, the
// runbook_url from runbookURLPattern, and dashboard_url from dashboardURLPattern.
local exporterWide = [
  'SupplierBalanceStale',
  'SupplierPollsFailing',
  'SupplierPollAuthFailing',
  'SupplierPollerStuck',
  'SupplierBalanceNotUpdating',
];
{
  _alert(name, severity, rule)::
    local key = name + ':' + severity;
    assert std.objectHas($._config.alerts, key) : 'no _config.alerts entry ' + key;
    local c = $._config.alerts[key];
    local health = std.startsWith(name, 'BalanceExporter') || std.member(exporterWide, name);
    local uid = if health then $._config.dashboardUIDs.health else $._config.dashboardUIDs.supplier;
    local supplier = if std.startsWith(name, 'BalanceExporter') then '$__all' else '{{ $labels.supplier }}';
    rule {
      alert: name,
      'for': c['for'],
      labels: { severity: c.severity } + (if std.objectHas(rule, 'labels') then rule.labels else {}),
      annotations: rule.annotations {
        runbook_url: $._config.runbookURLPattern % std.asciiLower(name),
      } + (
        if $._config.dashboardURLPattern == '' then {}
        else { dashboard_url: $._config.dashboardURLPattern % { uid: uid, supplier: supplier } }
      ),
    },
  // The end of the low and runway alerts' descriptions: how much to top up, read from
  // supplier:supplier_balance_topup_suggested:amount and the balance's top-up target,
  // with thousands separators (five reReplaceAll passes: up to 10^18).
  _topupHint:: " {{ with printf `supplier:supplier_balance_topup_suggested:amount{job=\"%s\",instance=\"%s\",supplier=\"%s\",account=\"%s\",currency=\"%s\"}` $labels.job $labels.instance $labels.supplier $labels.account $labels.currency | query }} {{- $amount := . | first | value }}{{ $days := \"?\" }}{{ $s := printf \"%.2f\" $amount }} {{- with printf `supplier_balance_topup_target_seconds{job=\"%s\",instance=\"%s\",supplier=\"%s\",account=\"%s\",currency=\"%s\"} / 86400` $labels.job $labels.instance $labels.supplier $labels.account $labels.currency | query }}{{ $days = . | first | value | humanize }}{{ end }} {{- $s = reReplaceAll \"^(-?[0-9]+)([0-9]{3})\" \"${1},${2}\" $s }}{{ $s = reReplaceAll \"^(-?[0-9]+)([0-9]{3})\" \"${1},${2}\" $s }}{{ $s = reReplaceAll \"^(-?[0-9]+)([0-9]{3})\" \"${1},${2}\" $s }}{{ $s = reReplaceAll \"^(-?[0-9]+)([0-9]{3})\" \"${1},${2}\" $s }}{{ $s = reReplaceAll \"^(-?[0-9]+)([0-9]{3})\" \"${1},${2}\" $s }} {{- if gt $amount 0.0 }}Top up about {{ $s }} {{ $labels.currency }} to cover {{ $days }} days of spend. {{- else }}Its usable balance already covers {{ $days }} days of spend.{{ end }} {{- else }}Top up the account.{{ end }}",
}
