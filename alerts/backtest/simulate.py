"""Simulated month of a reseller business, as balance_exporter would expose it.

The model has three layers:

* the business: orders with a daily and weekly rhythm (Poisson arrivals per minute,
  log-normal amounts), funds held until settlement on suppliers that have a frozen
  notion, and an operator who tops accounts up on business days in office hours when
  the runway falls below a random 3.5-5 days (more before the night and the weekend),
  now and then half a day late (the exporter's top-up window is those hours);
* the exporter: polls every supplier every 5 minutes +-10% jitter, 2% of polls fail
  transiently (runs of 1-2), keeps the last good values when a poll fails, derives the
  spend/top-up counters from balance differences (or from the ledger for ledger
  suppliers), records when each poll attempt ended (success or failure; the load time
  until the first one ends), restarts with fresh counters (two restarts, a minute
  without data each), and computes supplier_balance_spend_rate{window} exactly as the
  exporter defines it, from a history kept across restarts (--storage.path);
* Prometheus: scrapes the exporter every minute and writes `up`.

Incidents are injected into that month (the constants below); backtest.py says what
should detect each, and keeps the ground truth (true usable balance and what orders
took, per account and minute) to judge runway and balance alerts.

Only the Python standard library is used. Output: an OpenMetrics text file that
`promtool tsdb create-blocks-from openmetrics` turns into TSDB blocks.
"""

from __future__ import annotations

import bisect
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
# exporter restarts: the spend/top-up counters start again from zero and the scrape of
# that minute fails; the spend-rate history survives (--storage.path)
RESTARTS = (at(9, 6, 13), at(20, 15, 41))
REVOKED_KEY = (at(10, 14, 37), at(10, 17, 22))
OUTAGE = (at(13, 2, 13), at(13, 4, 41))
DRAIN_START = at(15, 9, 0)  # novasend/acct-eu: nobody tops it up any more
# Bursts: (supplier, account, currency, start, end, factor). Every order of the
# account is multiplied (duplicates) for the window.
BURSTS = [
    ("pinpay", "shop-1", "USD", at(8, 8, 20), at(8, 8, 40), 3),     # Tue morning
    ("foxreload", "main", "USD", at(11, 2, 35), at(11, 2, 55), 3),  # Fri night
    ("foxreload", "main", "USD", at(17, 14, 7), at(17, 14, 27), 3),  # Thu afternoon peak
    ("pinpay", "shop-1", "USD", at(19, 11, 10), at(19, 11, 30), 3),  # Saturday
    ("pinpay", "shop-2", "USD", at(22, 19, 0), at(22, 19, 40), 3),   # 500/day, evening
    ("pinpay", "shop-5", "USD", at(23, 13, 0), at(23, 15, 0), 5),    # 20/day, 2 hours
]
BURST = BURSTS[2][3:5]
FROZEN_STUCK = (at(21, 9, 0), at(22, 3, 0))  # vai247 USD: settlement stalls
DUPLICATES = at(23, 16, 3)  # dodo_wallets cus_123: two debits booked twice
# novasend answers 200 with the same balance and updated_at while orders go on
STOPPED = (at(26, 10, 0), at(26, 13, 0))
POLLER_HUNG = (at(25, 11, 2), at(25, 12, 30))  # foxreload: poller stuck, up=1
# vai247: its API stops answering; two polls end in timeouts, then a request hangs
# and no poll attempt ends any more (supplier_up stays 0, so it looks like an outage).
UPSTREAM_HANG = (at(27, 19, 52), at(27, 22, 10))
UPSTREAM_HANG_STUCK = at(27, 20, 2)  # the first poll attempt that never ends
# balanced_orders: every poll fails with reason "internal" (a parser bug of ours).
INTERNAL_ERRORS = (at(19, 14, 20), at(19, 15, 5))
ABSENT = (at(29, 1, 0), at(29, 2, 0))  # target gone from service discovery
# per supplier: the incidents that change how its polls end
INCIDENT_WINDOWS = {
    "foxreload": [POLLER_HUNG],
    "vai247": [UPSTREAM_HANG],
    "balanced_orders": [OUTAGE, INTERNAL_ERRORS],
    "dodo_wallets": [REVOKED_KEY],
    "novasend": [STOPPED],
}
# transient poll failures: 2% of polls, in runs of 1-2
FAIL_START_P = 0.02 / 1.5
JITTER = 0.10
RUNWAY_DAYS = 3
TOPUP_TARGET_DAYS = 7
# The top-up window the exporter is configured with (issue 16), the operator's own
# hours: business days 09:00-18:00 UTC (the operator looks every hour from 09:00 to
# 17:00), lead_time 1h (a simulated top-up lands at once; an hour is the exporter's
# conservative figure), margin 12h. No holidays: the operator of this month works every
# business day (a holiday would change when it tops up, and with that every random
# draw after it, i.e. the whole month the other incidents are judged on).
TOPUP_OPEN, TOPUP_CLOSE, TOPUP_LEAD, TOPUP_MARGIN = 9 * HOUR, 18 * HOUR, HOUR, 12 * HOUR
SPEND_WINDOWS = (("15m", 900), ("30m", 1800), ("1h", 3600), ("1d", 86400))
RECENT_KEEP, THIN = 40 * 60, 5 * 60  # the exporter's spend-rate history


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
        # two currencies, orders held 1-3 hours before they settle
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
        # five accounts, from 2,500 orders a day down to 20
        Supplier("pinpay", "json", 37, [
            Account("pinpay", "shop-1", "USD", 2500, 10.0),
            Account("pinpay", "shop-2", "USD", 500, 20.0),
            Account("pinpay", "shop-3", "USD", 200, 15.0),
            Account("pinpay", "shop-4", "EUR", 80, 30.0),
            Account("pinpay", "shop-5", "USD", 20, 50.0),
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
    "supplier_balance_runway_threshold_seconds": ("gauge", "runway threshold"),
    "supplier_balance_topup_target_seconds": ("gauge", "top-up target"),
    "supplier_topup_ready_timestamp_seconds": ("gauge", "when a top-up started now has landed"),
    "supplier_topup_margin_seconds": ("gauge", "top-up margin"),
    "supplier_balance_updated_timestamp_seconds": ("gauge", "when the balance was computed"),
    "supplier_balance_spend_rate": ("gauge", "spend per second between successful polls"),
    "supplier_up": ("gauge", "last poll succeeded"),
    "supplier_last_success_timestamp_seconds": ("gauge", "last successful poll"),
    "supplier_last_poll_timestamp_seconds": ("gauge", "end of the last poll attempt"),
    "supplier_poll_interval_seconds": ("gauge", "poll interval"),
    "supplier_poll_errors": ("counter", "failed polls"),
    "supplier_ledger_duplicate_suspects": ("counter", "duplicate ledger debits"),
    "balance_exporter_config_last_reload_successful": ("gauge", "config reload"),
}


class History:
    """The exporter's spend-rate history of one account: every point of the last
    40 minutes, older points thinned to at most one per 5 minutes, nothing older than
    needed for the longest window."""

    def __init__(self):
        self.recent: list = []  # (t, C), the last 40 minutes
        self.old: list = []  # thinned
        self.old_t: list = []

    def add(self, t: float, c: float):
        self.recent.append((t, c))
        while self.recent[0][0] < t - RECENT_KEEP:
            p = self.recent.pop(0)
            if not self.old or p[0] - self.old[-1][0] >= THIN:
                self.old.append(p)
                self.old_t.append(p[0])
        longest = SPEND_WINDOWS[-1][1]
        drop = 0
        while drop + 1 < len(self.old) and self.old[drop + 1][0] <= t - longest:
            drop += 1
        if drop:
            del self.old[:drop], self.old_t[:drop]

    def at_or_before(self, t: float):
        for p in reversed(self.recent):
            if p[0] <= t:
                return p
        i = bisect.bisect_right(self.old_t, t)
        return self.old[i - 1] if i else None


def spend_rates(h: History, t: float, c: float) -> dict:
    h.add(t, c)
    out = {}
    for wname, w in SPEND_WINDOWS:
        p = h.at_or_before(t - w)
        if p is not None:
            out[wname] = max(0.0, c - p[1]) / (t - p[0])
    return out


def is_business_day(day: int) -> bool:
    return day % 7 < 5  # START is a Monday


def topup_ready(t: int) -> int:
    """supplier_topup_ready_timestamp_seconds at `t`: when a top-up started now (or at
    the window's next opening) has landed, lead_time counted in window hours."""
    left, cur = TOPUP_LEAD, t
    while True:
        day = (cur - START) // DAY
        if is_business_day(day):
            start = max(cur, START + day * DAY + TOPUP_OPEN)
            close = START + day * DAY + TOPUP_CLOSE
            if start < close:
                if start + left <= close:
                    return start + left
                left -= close - start
        cur = START + (day + 1) * DAY


def simulate(job: str, seed: int = 20240101):
    """Run the month. Returns (series list, facts): facts holds derived times and the
    ground truth (per account and minute: usable balance, money taken by orders)."""
    rng = random.Random(seed)
    suppliers = build()
    base = {"job": job, "instance": INSTANCE}
    series: dict[tuple, Series] = {}

    def s(family, name, **labels):
        key = (name, tuple(sorted(labels.items())))
        if key not in series:
            series[key] = Series(family, name, {**labels, **base})
        return series[key]

    accounts = [a for sup in suppliers for a in sup.accounts]
    truth = {}
    for a in accounts:
        a.balance = round(10 * a.daily, -2)  # opening balances: ten days of spend
        a.trigger, a.late_by, a.pending_topup = rng.uniform(3.5, 5), 0, None
        truth[(a.supplier, a.account, a.currency)] = {
            "usable": array("d", [0.0]) * MINUTES, "taken": array("d", [0.0]) * MINUTES}
    bursts = {(b[0], b[1], b[2]): b for b in BURSTS}
    burst_of = {}
    for b in BURSTS:
        burst_of.setdefault((b[0], b[1], b[2]), []).append(b)

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
    # spend-rate state that survives restarts (the exporter runs with --storage.path):
    # history, the cumulative spend and the last balance it was computed from
    keys = [(a.supplier, a.currency + a.account) for a in accounts]
    hist = {k: History() for k in keys}
    rates = {k: {} for k in keys}
    cum = {k: 0.0 for k in keys}
    stored_bal = {k: None for k in keys}
    next_poll = {sup.name: START + sup.phase for sup in suppliers}
    fail_left = {sup.name: 0 for sup in suppliers}
    stopped_snapshot = {}
    facts = {"drain_zero": None, "drain_topup": None, "topups": 0, "truth": truth,
             "transient_failures": 0, "late_topups": 0}
    drain = next(a for a in suppliers[1].accounts if a.account == "acct-eu")
    vai_usd = suppliers[2].accounts[0]
    dodo_123 = suppliers[3].accounts[0]
    day_noise = [rng.gauss(1.0, 0.05) for _ in range(DAYS + 1)]

    def true_runway(a, m):
        tk = truth[(a.supplier, a.account, a.currency)]["taken"]
        lo = max(0, m - 1440)
        spent = sum(tk[lo:m]) * 1440 / max(1, m - lo) if m > 60 else a.daily
        return a.usable / spent if spent > 0 else float("inf")

    for m in range(MINUTES):
        t = START + m * SCRAPE
        day, hour = m // 1440, (m % 1440) / 60
        rhythm = daily_shape(hour) * WEEKLY[day % 7] * day_noise[day]

        # --- the business -------------------------------------------------------
        for a in accounts:
            tr = truth[(a.supplier, a.account, a.currency)]
            # operator: business days, office hours, an hourly look at the runway;
            # tops up when runway falls below 3.5-5 days (more before a weekend),
            # sometimes half a working day late (never across a weekend)
            if m % 60 == 0 and 9 <= hour < 18 and is_business_day(day):
                suppressed = a is drain and t >= DRAIN_START and facts["drain_topup"] is None
                if a is drain and facts["drain_zero"] and facts["drain_topup"] is None \
                        and t >= facts["drain_zero"] + 12 * HOUR:
                    suppressed = False  # noticed: restore the account
                    facts["drain_topup"] = t
                    a.pending_topup = t
                if not suppressed and a.pending_topup is None:
                    # the last look of the day covers the night; on Friday afternoon,
                    # the weekend
                    want = a.trigger + (0.5 if hour >= 17 else 0) \
                        + (2.0 if day % 7 == 4 and hour >= 13 else 0)
                    runway = true_runway(a, m)
                    if runway < want:
                        # half a day late (the next morning), only with runway to spare
                        late = rng.random() < 0.5 and day % 7 < 4 and runway >= 4.4
                        a.pending_topup = t + (12 * HOUR if late else 0)
                        facts["late_topups"] += late
                if a.pending_topup is not None and t >= a.pending_topup and not suppressed:
                    amount = round(rng.uniform(7, 10) * a.daily - a.usable, -2)
                    if amount > 0:
                        a.balance += amount
                        a.credits += amount
                        facts["topups"] += 1
                    a.pending_topup = None
                    a.trigger = rng.uniform(3.5, 5)
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
            for b in burst_of.get((a.supplier, a.account, a.currency), ()):
                if b[3] <= t < b[4]:
                    lam *= b[5]
            sigma = 0.6
            mu = math.log(a.mean_order) - sigma * sigma / 2
            taken = 0.0
            for _ in range(poisson(rng, lam)):
                if a.usable <= 0:
                    break
                amount = round(rng.lognormvariate(mu, sigma), 2)
                taken += amount
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
                    taken += amount
            tr["taken"][m] = taken
            tr["usable"][m] = a.usable
            if a is drain and facts["drain_zero"] is None and a.usable <= 0:
                facts["drain_zero"] = t

        # --- the exporter ---------------------------------------------------------
        restart = any(r <= t < r + SCRAPE for r in RESTARTS)
        if t == EXPORTER_DOWN[1] or restart:
            reset_exporter(t)  # restarted process: fresh counters, nothing polled yet
        for sup in suppliers:
            poll_t = next_poll[sup.name]
            if not (t <= poll_t < t + SCRAPE):
                continue
            next_poll[sup.name] = poll_t + int(POLL * rng.uniform(1 - JITTER, 1 + JITTER))
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
                reason = ("connect", "server_error", "timeout")[(poll_t // POLL) % 3]
            quiet = not any(w[0] - 30 * 60 <= poll_t < w[1] + 30 * 60
                            for w in INCIDENT_WINDOWS.get(sup.name, ()))
            if reason is None and quiet:
                # a run of 1-2 failures, then at least one success (none near this
                # supplier's own incidents, so each incident is tested on its own)
                if fail_left[sup.name] == 0 and rng.random() < FAIL_START_P:
                    fail_left[sup.name] = rng.choice((1, 2))
                if fail_left[sup.name] > 0:
                    fail_left[sup.name] -= 1
                    if fail_left[sup.name] == 0:
                        fail_left[sup.name] = -1
                    reason = rng.choice(("timeout", "server_error", "connect", "rate_limited"))
                    facts["transient_failures"] += 1
            c["last_poll"] = poll_t  # the attempt ends, whatever its outcome
            if reason is None and fail_left[sup.name] < 0:
                fail_left[sup.name] = 0
            if reason:
                c["up"] = 0
                c["errors"][reason] = c["errors"].get(reason, 0) + 1
                continue
            c["up"], c["last_success"] = 1, poll_t
            stopped = sup.name == "novasend" and STOPPED[0] <= poll_t < STOPPED[1]
            for a in sup.accounts:
                key = a.currency + a.account
                prev = c["acct"][key]
                if stopped:
                    if key not in stopped_snapshot:
                        stopped_snapshot[key] = prev
                    snap = stopped_snapshot[key]
                    c["acct"][key] = snap  # the same answer again: nothing moves
                    bal = snap[0]
                else:
                    bal = a.balance
                sk = (sup.name, key)
                if sup.ledger:
                    cum[sk] += a.debits
                elif stored_bal[sk] is not None:
                    cum[sk] += max(0.0, stored_bal[sk] - bal)
                stored_bal[sk] = bal
                if sup.ledger:
                    if prev is not None:
                        c["spent"][key] += a.debits
                        c["topped"][key] += a.credits
                    c["dups"][key] = a.duplicates
                elif prev is not None:
                    diff = bal - prev[0]
                    if diff < 0:
                        c["spent"][key] -= diff
                    else:
                        c["topped"][key] += diff
                if not stopped:
                    a.debits = a.credits = 0.0
                    upd = poll_t - rng.randint(0, 20)
                    c["acct"][key] = (a.balance, a.frozen, a.usable, upd)
                # the exporter's spend rates (kept in --storage.path, so they survive
                # restarts): at each successful poll the point (poll end, C), C = spent
                # + frozen, cumulative (what orders took from usable: settled spend plus
                # funds newly put on hold); rate = max(0, C_last - C_p) / (t_last - t_p)
                # for the latest kept point p at least `window` before the last one.
                rates[sk] = spend_rates(hist[sk], poll_t, cum[sk] + c["acct"][key][1])

        # --- Prometheus scrapes -------------------------------------------------------
        if ABSENT[0] <= t < ABSENT[1]:
            continue
        down = EXPORTER_DOWN[0] <= t < EXPORTER_DOWN[1] or restart
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
            s("supplier_topup_ready_timestamp_seconds", "supplier_topup_ready_timestamp_seconds",
              supplier=sup.name).values[m] = topup_ready(t)
            s("supplier_topup_margin_seconds", "supplier_topup_margin_seconds",
              supplier=sup.name).values[m] = TOPUP_MARGIN
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
                bal, frz, usa, upd = c["acct"][key]
                s("supplier_balance", "supplier_balance", **lab).values[m] = bal
                s("supplier_balance_frozen", "supplier_balance_frozen", **lab).values[m] = frz
                s("supplier_balance_usable", "supplier_balance_usable", **lab).values[m] = usa
                s("supplier_balance_updated_timestamp_seconds",
                  "supplier_balance_updated_timestamp_seconds", **lab).values[m] = upd
                s("supplier_balance_spent", "supplier_balance_spent_total", **lab).values[m] = c["spent"][key]
                s("supplier_balance_topped_up", "supplier_balance_topped_up_total", **lab).values[m] = c["topped"][key]
                for wname, v in rates[(sup.name, key)].items():
                    s("supplier_balance_spend_rate", "supplier_balance_spend_rate",
                      window=wname, **lab).values[m] = v
                s("supplier_balance_topup_target_seconds", "supplier_balance_topup_target_seconds",
                  **lab).values[m] = TOPUP_TARGET_DAYS * DAY
                if a.thresholds:
                    s("supplier_balance_low_threshold", "supplier_balance_low_threshold",
                      **lab).values[m] = a.low
                    s("supplier_balance_runway_threshold_seconds",
                      "supplier_balance_runway_threshold_seconds", **lab).values[m] = RUNWAY_DAYS * DAY
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
