"""A small PromQL scanner shared by the mixin's checks: finds every selector of an
exporter metric (supplier_*, balance_exporter_*, up, scrape_*) in an expression,
skipping string literals, comments, label matchers and label lists (by/on/...).

    selectors(expr) -> [(metric, matchers_text_or_None)]
"""
import re

EXPORTER_METRIC = re.compile(r"^(supplier_[a-z0-9_]+|balance_exporter_[a-z0-9_]+|up|scrape_[a-z0-9_]+)$")
LABEL_LIST_KEYWORDS = {"by", "on", "without", "ignoring", "group_left", "group_right"}


def _string_end(text, i):
    """Index just past the string literal starting at text[i]."""
    quote, j = text[i], i + 1
    while j < len(text) and text[j] != quote:
        j += 2 if text[j] == "\\" and quote != "`" else 1
    return j + 1


def _brace_end(text, i):
    """Index just past the '}' closing the '{' at text[i]."""
    j = i + 1
    while j < len(text) and text[j] != "}":
        j = _string_end(text, j) if text[j] in "\"'`" else j + 1
    return j + 1


def tokens(expr):
    """Yields (start, end, kind) spans: kind is 'metric' for an exporter metric name used
    as a selector, 'matchers' for the {...} right after it, 'other' for the rest."""
    i, n = 0, len(expr)
    while i < n:
        c = expr[i]
        if c in "\"'`":
            j = _string_end(expr, i)
            yield i, j, "other"
            i = j
        elif c == "#":
            j = expr.find("\n", i)
            j = n if j < 0 else j
            yield i, j, "other"
            i = j
        elif c == "{":
            j = _brace_end(expr, i)
            yield i, j, "other"
            i = j
        elif c.isalpha() or c in "_:":
            j = i
            while j < n and (expr[j].isalnum() or expr[j] in "_:"):
                j += 1
            word = expr[i:j]
            k = j
            while k < n and expr[k] in " \t\n":
                k += 1
            if word in LABEL_LIST_KEYWORDS and k < n and expr[k] == "(":
                e = expr.index(")", k) + 1
                yield i, e, "other"
                i = e
            elif EXPORTER_METRIC.match(word) and not (k < n and expr[k] == "(") and (i == 0 or expr[i - 1] != "$"):
                yield i, j, "metric"
                if j < n and expr[j] == "{":
                    e = _brace_end(expr, j)
                    yield j, e, "matchers"
                    i = e
                else:
                    i = j
            else:
                yield i, j, "other"
                i = j
        else:
            yield i, i + 1, "other"
            i += 1


def selectors(expr):
    """Every exporter-metric selector: (metric, '{...}' or None)."""
    out, last = [], None
    for start, end, kind in tokens(expr):
        if kind == "metric":
            last = [expr[start:end], None]
            out.append(last)
        elif kind == "matchers" and last is not None:
            last[1] = expr[start:end]
        else:
            last = None
    return [tuple(s) for s in out]
