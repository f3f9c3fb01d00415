// Renders the mixin's dashboards as the repository ships them, as {path: dashboard}
// (JSON output, jsonnet's own writer: std.manifestJsonEx is slow on dashboards):
//   jsonnet -m OUT mixin/dashboards.jsonnet [--tla-code config='{...}']
// mixin/generate.sh runs it; config is merged into _config.
function(config={})
  local mixin = (import 'mixin.libsonnet') + { _config+:: config };
  {
    ['dashboards/' + f]: mixin.grafanaDashboards[f]
    for f in std.objectFields(mixin.grafanaDashboards)
  }
