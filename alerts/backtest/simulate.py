"""Simulated month of a reseller business, as balance_exporter would expose it.

The model has three layers:

* the business: orders with a daily and weekly rhythm (Poisson arrivals per minute,
  log-normal amounts), funds held until settlement on suppliers that have a frozen
  notion, and an operator who tops accounts up during office hours when runway gets
  short;
* the exporter: polls every supplier on its own 5-minute schedule, keeps the last good
  values when a poll fails, derives the spend/top-up counters from balance differences
  (or from the ledger for ledger suppliers), records when each poll attempt ended
  (success or failure; the load time until the first one ends), restarts with fresh
  counters;
* Prometheus: scrapes the exporter every minute and writes `up`.

Incidents are injected into that month; `INCIDENTS` says what should detect each.

Only the Python standard library is used. Output: an OpenMetrics text file that
`promtool tsdb create-blocks-from openmetrics` turns into TSDB blocks.
"""

from __future__ import annotations

import math
import random
from array import array
from dataclasses import dataclass, field

# 2024-01-22T00:00:00Z, a Monday. The month lies inside one 1458h TSDB block range,
# so promtool writes (and parses the input for) a single block.
START = 1705881600
DAYS = 30
MINUTES = DAYS * 1440
SCRAPE = 60
POLL = 300
INSTANCE = "balance-exporter:9866"
NAN = float("nan")
DAY = 86400
HOUR = 3600


def at(day: int, hh: int, mm: int = 0) -> int:
    """Unix time of day `day` (0-based) at hh:mm UTC."""
    return START + day * DAY + hh * HOUR + mm * 60


# Incident times. The table printed by backtest.py refers to these.
EXPORTER_DOWN = (at(7, 3, 0), at(7, 3, 40))
REVOKED_KEY = (at(10, 14, 37), at(10, 17, 22))
OUTAGE = (at(13, 2, 13), at(13, 4, 41))
DRAIN_START = at(15, 9, 0)  # novasend/acct-eu: nobody tops it up any more
BURST = (at(17, 14, 7), at(17, 14, 27))  # foxreload: every order tripled
FROZEN_STUCK = (at(21, 9, 0), at(22, 3, 0))  # vai247 USD: settlement stalls
DUPLICATES = at(23, 16, 3)  # dodo_wallets cus_123: two debits booked twice
POLLER_HUNG = (at(25, 11, 2), at(25, 12, 30))  # foxreload: poller stuck, up=1
# vai247: its API stops answering; two polls end in timeouts, then a request hangs
# and no poll attempt ends any more (supplier_up stays 0, so it looks like an outage).
UPSTREAM_HANG = (at(27, 19, 52), at(27, 22, 10))
UPSTREAM_HANG_STUCK = at(27, 20, 2)  # the first poll attempt that never ends
# balanced_orders: every poll fails with reason "internal" (a parser bug of ours).
INTERNAL_ERRORS = (at(19, 14, 20), at(19, 15, 5))
ABSENT = (at(29, 1, 0), at(29, 2, 0))  # target gone from service discovery


def daily_shape(hour: float) -> float:
    """Relative order rate over the day (mean about 1)."""
    if hour < 6:
        return 0.25
    if hour < 9:
        return 0.25 + (hour - 6) / 3 * 1.15
    if hour < 18:
        return 1.55
    if hour < 22:
        return 1.55 - (hour - 18) / 4 * 1.0
    return 0.45


WEEKLY = [1.1, 1.05, 1.05, 1.1, 1.15, 0.8, 0.7]


def poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


@dataclass
class Account:
    supplier: str
    account: str
    currency: str
    orders_per_day: float
    mean_order: float
    hold_minutes: tuple[int, int] | None = None  # settlement delay range, None: no frozen
    thresholds: bool = True
    # state
    balance: float = 0.0
    frozen: float = 0.0
    holds: list = field(default_factory=list)  # (settle_minute, amount)
    debits: float = 0.0  # ledger debits not yet seen by a poll
    credits: float = 0.0
    duplicates: int = 0

    @property
    def daily(self) -> float:
        return self.orders_per_day * self.mean_order

    @property
    def usable(self) -> float:
        return self.balance - self.frozen

    @property
    def low(self) -> float:
        return round(1.5 * self.daily, -2)


@dataclass
class Supplier:
    name: str
    kind: str
    phase: int  # seconds after START of the first poll
    accounts: list
    ledger: bool = False


def build() -> list[Supplier]:
    return [
        Supplier("foxreload", "foxreload", 17, [Account("foxreload", "main", "USD", 2000, 12.0)]),
        Supplier("novasend", "novasend", 83, [
            Account("novasend", "acct-eu", "EUR", 800, 25.0),
            # no USD threshold configured for novasend: no low/runway series
            Account("novasend", "acct-us", "USD", 300, 40.0, thresholds=False),
        ]),
        Supplier("vai247", "vai247", 141, [
            Account("vai247", "main", "USD", 600, 30.0, hold_minutes=(60, 180)),
            Account("vai247", "main", "KHR", 400, 120000.0, hold_minutes=(60, 180)),
        ]),
        Supplier("dodo_wallets", "dodo_wallets", 203, [
            Account("dodo_wallets", "cus_123", "USD", 1000, 8.0),
            Account("dodo_wallets", "cus_456", "EUR", 150, 15.0),
        ], ledger=True),
        Supplier("balanced_orders", "balanced_orders", 259, [
            Account("balanced_orders", "merchant-7", "USD", 100, 60.0, hold_minutes=(30, 240)),
        ]),
    ]


class Series:
    """One exported series: a value per scrape minute, NaN when not exposed."""

    def __init__(self, family: str, name: str, labels: dict):
        self.family, self.name, self.labels = family, name, labels
        self.values = array("d", [NAN]) * MINUTES


FAMILIES = {  # family -> (type, help)
    "up": ("gauge", "scrape health"),
    "supplier_balance": ("gauge", "total balance"),
    "supplier_balance_frozen": ("gauge", "frozen balance"),
    "supplier_balance_usable": ("gauge", "usable balance"),
    "supplier_balance_spent": ("counter", "observed spend"),
    "supplier_balance_topped_up": ("counter", "observed top-ups"),
    "supplier_balance_low_threshold": ("gauge", "low threshold"),
    "supplier_balance_runway_threshold_days": ("gauge", "runway threshold"),
    "supplier_up": ("gauge", "last poll succeeded"),
    "supplier_last_success_timestamp_seconds": ("gauge", "last successful poll"),
    "supplier_last_poll_timestamp_seconds": ("gauge", "end of the last poll attempt"),
    "supplier_poll_interval_seconds": ("gauge", "poll interval"),
    "supplier_poll_errors": ("counter", "failed polls"),
    "supplier_ledger_duplicate_suspects": ("counter", "duplicate ledger debits"),
    "balance_exporter_config_last_reload_successful": ("gauge", "config reload"),
}


def simulate(job: str, seed: int = 20240101):
    """Run the month. Returns (series list, facts) where facts holds derived times."""
    rng = random.Random(seed)
    suppliers = build()
    base = {"job": job, "instance": INSTANCE}
    series: dict[tuple, Series] = {}

    def s(family, name, **labels):
        key = (name, tuple(sorted(labels.items())))
        if key not in series:
            series[key] = Series(family, name, {**labels, **base})
        return series[key]

    # opening balances: ten days of spend
    for sup in suppliers:
        for a in sup.accounts:
            a.balance = round(10 * a.daily, -2)

    # exporter cache, per supplier
    cache = {}

    def reset_exporter(loaded_at):
        for sup in suppliers:
            cache[sup.name] = {
                "up": None, "last_success": None, "errors": {}, "dups": {},
                "last_poll": loaded_at,  # the load time until the first attempt ends
                "acct": {a.currency + a.account: None for a in sup.accounts},
                "spent": {a.currency + a.account: 0.0 for a in sup.accounts},
                "topped": {a.currency + a.account: 0.0 for a in sup.accounts},
            }

    reset_exporter(START)
    facts = {"drain_zero": None, "drain_topup": None, "topups": 0}
    drain = next(a for a in suppliers[1].accounts if a.account == "acct-eu")
    fox = suppliers[0].accounts[0]
    vai_usd = suppliers[2].accounts[0]
    dodo_123 = suppliers[3].accounts[0]
    day_noise = [rng.gauss(1.0, 0.05) for _ in range(DAYS + 1)]

    for m in range(MINUTES):
        t = START + m * SCRAPE
        day, hour = m // 1440, (m % 1440) / 60
        rhythm = daily_shape(hour) * WEEKLY[day % 7] * day_noise[day]

        # --- the business -------------------------------------------------------
        for sup in suppliers:
            for a in sup.accounts:
                # operator: office hours, hourly look at the runway
                if m % 60 == 0 and 9 <= hour < 18:
                    suppressed = a is drain and t >= DRAIN_START and facts["drain_topup"] is None
                    if a is drain and facts["drain_zero"] and facts["drain_topup"] is None \
                            and t >= facts["drain_zero"] + 12 * HOUR:
                        suppressed = False  # noticed: restore the account
                        facts["drain_topup"] = t
                    if a is drain and t == DRAIN_START:
                        # the last top-up before the operator forgets this account
                        amount = max(0.0, round(8 * a.daily - a.usable, -3))
                        a.balance += amount
                        a.credits += amount
                        facts["topups"] += 1
                    elif not suppressed and a.usable < 6 * a.daily:
                        amount = round(14 * a.daily - a.usable, -3)
                        a.balance += amount
                        a.credits += amount
                        facts["topups"] += 1
                # settlements
                if a.holds:
                    stalled = a is vai_usd and FROZEN_STUCK[0] <= t < FROZEN_STUCK[1]
                    if not stalled:
                        due = [h for h in a.holds if h[0] <= m]
                        if due:
                            a.holds = [h for h in a.holds if h[0] > m]
                            for _, amount in due:
                                a.frozen -= amount
                                a.balance -= amount
                                a.debits += amount
                # orders (fail when nothing is usable; the last one may overdraw)
                lam = a.orders_per_day / 1440 * rhythm
                if a is fox and BURST[0] <= t < BURST[1]:
                    lam *= 3
                sigma = 0.6
                mu = math.log(a.mean_order) - sigma * sigma / 2
                for _ in range(poisson(rng, lam)):
                    if a.usable <= 0:
                        break
                    amount = round(rng.lognormvariate(mu, sigma), 2)
                    if a.hold_minutes:
                        a.frozen += amount
                        a.holds.append((m + rng.randint(*a.hold_minutes), amount))
                    else:
                        a.balance -= amount
                        a.debits += amount
                if a is dodo_123 and t <= DUPLICATES < t + 60:
                    for _ in range(2):  # two orders booked twice
                        amount = round(rng.lognormvariate(mu, sigma), 2)
                        a.balance -= amount
                        a.debits += amount
                        a.duplicates += 1
                if a is drain and facts["drain_zero"] is None and a.usable <= 0:
                    facts["drain_zero"] = t

        # --- the exporter ---------------------------------------------------------
        if t == EXPORTER_DOWN[1]:
            reset_exporter(t)  # restarted process: fresh counters, nothing polled yet
        for sup in suppliers:
            k = -((START + sup.phase - t) // POLL)  # first poll at or after t
            poll_t = START + sup.phase + k * POLL
            if not (t <= poll_t < t + SCRAPE) or poll_t < START:
                continue
            c = cache[sup.name]
            if EXPORTER_DOWN[0] <= poll_t < EXPORTER_DOWN[1]:
                continue
            if sup.name == "foxreload" and POLLER_HUNG[0] <= poll_t < POLLER_HUNG[1]:
                continue  # scheduler stuck: no poll at all, supplier_up stays as it was
            if sup.name == "vai247" and UPSTREAM_HANG_STUCK <= poll_t < UPSTREAM_HANG[1]:
                continue  # the poll hangs: no attempt ends, supplier_up stays 0
            reason = None
            if sup.name == "vai247" and UPSTREAM_HANG[0] <= poll_t < UPSTREAM_HANG_STUCK:
                reason = "timeout"
            if sup.name == "balanced_orders" and INTERNAL_ERRORS[0] <= poll_t < INTERNAL_ERRORS[1]:
                reason = "internal"
            if sup.name == "dodo_wallets" and REVOKED_KEY[0] <= poll_t < REVOKED_KEY[1]:
                reason = "auth"
            if sup.name == "balanced_orders" and OUTAGE[0] <= poll_t < OUTAGE[1]:
                reason = ("connect", "server_error", "timeout")[k % 3]
            c["last_poll"] = poll_t  # the attempt ends, whatever its outcome
            if reason:
                c["up"] = 0
                c["errors"][reason] = c["errors"].get(reason, 0) + 1
                continue
            c["up"], c["last_success"] = 1, poll_t
            for a in sup.accounts:
                key = a.currency + a.account
                prev = c["acct"][key]
                if sup.ledger:
                    if prev is not None:
                        c["spent"][key] += a.debits
                        c["topped"][key] += a.credits
                    c["dups"][key] = a.duplicates
                elif prev is not None:
                    diff = a.balance - prev[0]
                    if diff < 0:
                        c["spent"][key] -= diff
                    else:
                        c["topped"][key] += diff
                a.debits = a.credits = 0.0
                c["acct"][key] = (a.balance, a.frozen, a.usable)

        # --- Prometheus scrapes -------------------------------------------------------
        if ABSENT[0] <= t < ABSENT[1]:
            continue
        down = EXPORTER_DOWN[0] <= t < EXPORTER_DOWN[1]
        s("up", "up").values[m] = 0.0 if down else 1.0
        if down:
            continue
        s("balance_exporter_config_last_reload_successful",
          "balance_exporter_config_last_reload_successful").values[m] = 1.0
        for sup in suppliers:
            c = cache[sup.name]
            s("supplier_poll_interval_seconds", "supplier_poll_interval_seconds",
              supplier=sup.name).values[m] = POLL
            s("supplier_last_poll_timestamp_seconds", "supplier_last_poll_timestamp_seconds",
              supplier=sup.name).values[m] = c["last_poll"]
            if c["up"] is None:
                continue  # not polled yet since start
            s("supplier_up", "supplier_up", supplier=sup.name).values[m] = c["up"]
            if c["last_success"] is not None:
                s("supplier_last_success_timestamp_seconds",
                  "supplier_last_success_timestamp_seconds",
                  supplier=sup.name).values[m] = c["last_success"]
            for reason, n in c["errors"].items():  # created on first error
                s("supplier_poll_errors", "supplier_poll_errors_total",
                  supplier=sup.name, reason=reason).values[m] = n
            for a in sup.accounts:
                key = a.currency + a.account
                if c["acct"][key] is None:
                    continue
                lab = dict(supplier=sup.name, account=a.account, currency=a.currency)
                bal, frz, usa = c["acct"][key]
                s("supplier_balance", "supplier_balance", **lab).values[m] = bal
                s("supplier_balance_frozen", "supplier_balance_frozen", **lab).values[m] = frz
                s("supplier_balance_usable", "supplier_balance_usable", **lab).values[m] = usa
                s("supplier_balance_spent", "supplier_balance_spent_total", **lab).values[m] = c["spent"][key]
                s("supplier_balance_topped_up", "supplier_balance_topped_up_total", **lab).values[m] = c["topped"][key]
                if a.thresholds:
                    s("supplier_balance_low_threshold", "supplier_balance_low_threshold",
                      **lab).values[m] = a.low
                    s("supplier_balance_runway_threshold_days",
                      "supplier_balance_runway_threshold_days", **lab).values[m] = 3
                if sup.ledger:
                    s("supplier_ledger_duplicate_suspects",
                      "supplier_ledger_duplicate_suspects_total", **lab).values[m] = c["dups"][key]
    return list(series.values()), facts


def fmt_labels(labels: dict) -> str:
    return ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))


def write_openmetrics(path: str, series: list[Series]) -> int:
    """Write the series as OpenMetrics text; returns the number of samples."""
    by_family: dict[str, list[Series]] = {}
    for ser in series:
        by_family.setdefault(ser.family, []).append(ser)
    n = 0
    with open(path, "w") as out:
        for family, members in by_family.items():
            typ, help_ = FAMILIES[family]
            out.write(f"# HELP {family} {help_}\n# TYPE {family} {typ}\n")
            for ser in members:
                head = f"{ser.name}{{{fmt_labels(ser.labels)}}} "
                lines = [f"{head}{v!r} {START + i * SCRAPE}\n"
                         for i, v in enumerate(ser.values) if v == v]
                n += len(lines)
                out.writelines(lines)
        out.write("# EOF\n")
    return n
