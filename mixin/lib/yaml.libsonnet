// A YAML writer for rule files people read: keys in the order of Prometheus' docs,
// plain scalars where YAML reads them back unchanged, single quotes otherwise (PromQL
// keeps its double quotes unescaped), `|` blocks for multi-line expressions and `>-`
// folded blocks for long single-line texts. std.manifestYamlDoc quotes every string.
local order = [
  'apiVersion', 'kind', 'metadata', 'spec', 'groups', 'name', 'interval', 'rules',
  'alert', 'record', 'expr', 'for', 'keep_firing_for', 'labels',
  'annotations', 'summary', 'description', 'runbook_url', 'dashboard_url',
];
// Texts folded into `>-` blocks when long; expressions and URLs stay on one line.
local folded = ['summary', 'description'];
local rank(k) = local i = std.find(k, order); if i == [] then std.length(order) else i[0];
local keys(o) = std.sort(std.objectFields(o), function(k) std.char(65 + rank(k)) + k);

// Whether `text` contains `part` (std.findSubstr is far too slow in jsonnet 0.18).
local has(text, part) = std.strReplace(text, part, '') != text;

local reserved = ['', 'true', 'false', 'null', 'yes', 'no', 'on', 'off', 'y', 'n', '~'];
// Could YAML read it as a number or a time? (5m is a string; 5, 1e3, 0x1f, 1:30 are not.)
local numberish(s) = has('0123456789+-.', s[0])
  && std.length([c for c in std.stringChars(s) if !has('0123456789.+-eE_xXoObB:', c)]) == 0;
local plain(s) =
  !std.member(reserved, std.asciiLower(s))
  && !numberish(s)
  && !has('-?:,[]{}#&*!|>\'"%@` ', s[0])
  && !has(s, ': ')
  && !has(s, ' #')
  && !has(s, '\t')
  && s[std.length(s) - 1] != ' ' && s[std.length(s) - 1] != ':';
local quoted(s) = "'" + std.strReplace(s, "'", "''") + "'";

// Greedy word wrap at `width` columns; only for texts whose words are separated by
// single spaces, so that folding them back gives the same text.
local wrap(s, width) =
  std.foldl(
    function(lines, w)
      local last = lines[std.length(lines) - 1];
      if last == '' then lines[:std.length(lines) - 1] + [w]
      else if std.length(last) + 1 + std.length(w) <= width then lines[:std.length(lines) - 1] + [last + ' ' + w]
      else lines + [w],
    std.split(s, ' '),
    [''],
  );
local foldable(s) =
  std.length(s) > 80 && !has(s, '\n')
  && std.join(' ', [w for w in std.split(s, ' ') if w != '']) == s;

local pad(n) = std.repeat(' ', n);

// Lines of `v` as the value of a key (after "key:") or of a list item, at indent n.
local value(v, n, fold=false) =
  if std.isString(v) then
    if has(v, '\n') then
      local body = std.rstripChars(v, '\n');
      local trailing = std.length(v) - std.length(body);
      assert trailing <= 1 : 'a block text may end with at most one newline';
      assert body[0] != ' ' : 'a block text may not start with a space';
      { inline: if trailing == 1 then '|' else '|-', lines: [if l == '' then '' else pad(n) + l for l in std.split(body, '\n')] }
    else if fold && foldable(v) then
      { inline: '>-', lines: [pad(n) + l for l in wrap(v, 88 - n)] }
    else { inline: if plain(v) then v else quoted(v), lines: [] }
  else if std.isBoolean(v) || std.isNumber(v) then { inline: std.toString(v), lines: [] }
  else if v == null then { inline: 'null', lines: [] }
  else if std.isArray(v) then
    if v == [] then { inline: '[]', lines: [] }
    else { inline: '', lines: std.flattenArrays([item(x, n) for x in v]) }
  else if std.objectFields(v) == [] then { inline: '{}', lines: [] }
  else { inline: '', lines: object(v, n) },

  // "- " followed by the element, at indent n.
  item(x, n) =
  if std.isObject(x) && std.objectFields(x) != [] then
    local lines = object(x, n + 2);
    [pad(n) + '- ' + std.lstripChars(lines[0], ' ')] + lines[1:]
  else
    local val = value(x, n + 2);
    [pad(n) + '- ' + val.inline] + val.lines,

  // "key: value" lines of an object, at indent n.
  object(o, n) = std.flattenArrays([
    local val = value(o[k], n + 2, std.member(folded, k));
    [pad(n) + k + ':' + (if val.inline == '' then '' else ' ' + val.inline)] + val.lines
    for k in keys(o)
  ]);

{
  // The YAML document for `v` (an object), ending with a newline.
  manifest(v):: std.join('\n', object(v, 0)) + '\n',
}
