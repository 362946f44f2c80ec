"""Synthetic card transactions with labelled fraud, for exercising tabular anomaly detectors.

Every customer has habits: a home country, a typical spend level, three usual merchant
categories, usual active hours and an online share. Legitimate rows follow those habits with
realistic noise (trips abroad, cross-border web shops, rare big-ticket purchases, late-night
rows), so that no single column is a fraud flag. Fraud is injected into random customers'
streams and makes up ``fraud_rate`` of all rows:

* ``card_testing``: a burst of 3-8 tiny online payments (0.50-3.00) at odd web merchants,
  about a minute apart, at any hour.
* ``account_takeover``: 1-2 online travel or electronics purchases worth 12-50 times the
  customer's typical amount, from a foreign country, at night.
* ``skimming``: 2-4 card-present ATM withdrawals of round sums in a country the customer has
  never used.
* ``unusual_category_spike``: a purchase 6-20 times the typical amount in a category the
  customer has never used, at home and within the customer's usual hours.

Example
-------
>>> df = generate_transactions(n_customers=200, days=3, fraud_rate=0.02, seed=1)
>>> list(df.columns[:4])
['transaction_id', 'customer_id', 'timestamp', 'amount']
>>> bool(df["timestamp"].is_monotonic_increasing), sorted(df["fraud_pattern"].unique())
(True, ['', 'account_takeover', 'card_testing', 'skimming', 'unusual_category_spike'])
"""

from __future__ import annotations

import numpy as np
import pandas as pd

Arrays = dict[str, np.ndarray]

CATEGORIES = ["grocery", "fuel", "restaurant", "travel", "electronics", "online_retail", "atm",
              "pharmacy", "entertainment"]
GROCERY, FUEL, RESTAURANT, TRAVEL, ELECTRONICS, ONLINE_RETAIL, ATM, PHARMACY, ENTERTAINMENT = range(9)
# Amount relative to the customer's typical spend: travel and electronics are the big tickets.
CATEGORY_SCALE = np.array([1.0, 1.5, 0.9, 8.0, 6.0, 1.2, 2.0, 0.5, 0.8])
# Chance that a purchase in the category is made online, for a customer who prefers online.
ONLINE_AFFINITY = np.array([0.3, 0.0, 0.2, 0.9, 0.6, 1.0, 0.0, 0.2, 0.6])
# Habits form around everyday categories; travel and electronics only come up off-habit.
HABIT_CATEGORIES = np.array([GROCERY, FUEL, RESTAURANT, ONLINE_RETAIL, ATM, PHARMACY, ENTERTAINMENT])
HABIT_WEIGHT = np.array([0.30, 0.15, 0.20, 0.15, 0.08, 0.06, 0.06])
OFF_HABIT_WEIGHT = np.array([0.05, 0.05, 0.15, 0.30, 0.25, 0.05, 0.0, 0.05, 0.10])

COUNTRIES = ["GB", "FR", "DE", "ES", "NL", "IE", "US", "IT", "PT", "GR"]
HOME_WEIGHT = np.array([0.70, 0.08, 0.08, 0.06, 0.05, 0.03, 0.0, 0.0, 0.0, 0.0])
ONLINE_HUBS = np.array([4, 5, 6])  # NL, IE, US: where many cross-border web shops are registered

CHANNELS = ["pos", "online", "atm"]
POS, ONLINE, ATM_CHANNEL = range(3)
PATTERNS = ["", "card_testing", "account_takeover", "skimming", "unusual_category_spike"]
# Pattern -> (share of fraud rows, min rows, max rows per incident).
FRAUD_MIX = {"card_testing": (0.35, 3, 8), "account_takeover": (0.20, 1, 2),
             "skimming": (0.25, 2, 4), "unusual_category_spike": (0.20, 1, 1)}

BRANDS = {
    "grocery": ["Greenleaf Market", "Corner Fresh", "Daily Basket", "Harvest Foods"],
    "fuel": ["Roadstar Fuel", "Petrolux", "Northway Services", "Bluefuel"],
    "restaurant": ["Olive & Oak", "Bao House", "The Copper Pot", "Piazza Uno"],
    "travel": ["SkyHop Air", "Railway Direct", "Harbour Hotels", "Wanderly Trips"],
    "electronics": ["Voltz Electronics", "PixelPoint", "Circuit Lane", "GadgetHub"],
    "online_retail": ["ShopStream", "Parcelia", "CartNova", "Bazaarly"],
    "atm": ["Cashpoint ATM", "Bank Lobby ATM", "Station ATM", "Kiosk ATM"],
    "pharmacy": ["CarePlus Pharmacy", "Wellway Chemist", "MediCorner", "Green Cross"],
    "entertainment": ["Starlight Cinema", "Lumen Arena", "Arcadia Games", "TicketTap"],
}
OUTLETS = 8  # merchants per (country, category); store numbers make every name unique
MERCHANTS = np.array([[[f"{BRANDS[cat][m % 4]} {k * OUTLETS + m + 1:03d}" for m in range(OUTLETS)]
                       for cat in CATEGORIES] for k in range(len(COUNTRIES))], dtype=object)
DAY = 86_400


def _pick_excluding(rng: np.random.Generator, excluded: np.ndarray) -> np.ndarray:
    """Uniform column index per row among the non-excluded ones (any column if all excluded)."""
    return np.argmax(rng.random(excluded.shape) - 2.0 * excluded, axis=1)


def _customers(rng: np.random.Generator, n: int, days: int) -> Arrays:
    home = rng.choice(len(COUNTRIES), size=n, p=HOME_WEIGHT)
    # Weighted sampling of three habits without replacement (Gumbel top-k), in order of preference.
    keys = np.log(HABIT_WEIGHT) + rng.gumbel(size=(n, len(HABIT_CATEGORIES)))
    travelling = rng.random(n) < 0.06
    trip_country = _pick_excluding(rng, np.arange(len(COUNTRIES)) == home[:, None])
    trip_start = rng.integers(0, days, n)
    return dict(
        home=home,
        typical=np.round(rng.lognormal(np.log(35.0), 0.6, n), 2),
        habits=HABIT_CATEGORIES[np.argsort(-keys, axis=1)[:, :3]],
        hour_centre=np.clip(rng.normal(14.0, 2.5, n), 7.0, 21.0),
        hour_spread=rng.uniform(1.5, 3.5, n),
        online_share=rng.beta(2.0, 5.0, n),
        rate=rng.lognormal(np.log(1.8), 0.5, n),  # transactions per day
        local=rng.integers(0, OUTLETS, n),  # the customer's nearby branch of each chain
        trip_country=np.where(travelling, trip_country, -1),
        trip_start=trip_start,
        trip_end=trip_start + rng.integers(2, 6, n),
    )


def _legitimate(rng: np.random.Generator, cu: Arrays, days: int) -> Arrays:
    c = np.repeat(np.arange(len(cu["home"])), rng.poisson(cu["rate"] * days))
    n = len(c)
    day = rng.integers(0, days, n)
    category = cu["habits"][c, rng.choice(3, size=n, p=[0.55, 0.30, 0.15])]
    off_habit = rng.random(n) < 0.04  # the occasional flight, laptop or concert ticket
    category[off_habit] = rng.choice(len(CATEGORIES), size=off_habit.sum(), p=OFF_HABIT_WEIGHT)
    online = rng.random(n) < cu["online_share"][c] * ONLINE_AFFINITY[category]
    channel = np.where(category == ATM, ATM_CHANNEL, np.where(online | (category == ONLINE_RETAIL), ONLINE, POS))
    # Trips move card-present spending abroad; some web shops are registered abroad. Both give
    # legitimate country != home_country rows, so that comparison alone is no fraud flag.
    on_trip = (cu["trip_country"][c] >= 0) & (day >= cu["trip_start"][c]) & (day < cu["trip_end"][c])
    country = np.where(on_trip & (channel != ONLINE), cu["trip_country"][c], cu["home"][c])
    cross_border = (channel == ONLINE) & (rng.random(n) < 0.15)
    country = np.where(cross_border, rng.choice(ONLINE_HUBS, n), country)
    hour = rng.normal(cu["hour_centre"][c], cu["hour_spread"][c])
    hour = np.where(rng.random(n) < 0.02, rng.uniform(0, 24, n), hour % 24)  # night owls, shift work
    amount = cu["typical"][c] * CATEGORY_SCALE[category] * rng.lognormal(0.0, 0.45, n)
    splurge = rng.random(n) < 0.01  # legitimate big spending days: false-positive bait
    amount = np.where(splurge, amount * rng.uniform(3, 10, n), amount)
    amount = np.where(category == ATM, np.maximum(10.0, np.round(amount, -1)), amount)
    # Apps and streaming sell at tiny price points online, just like card testers' probes.
    digital = (category == ENTERTAINMENT) & (channel == ONLINE) & (rng.random(n) < 0.5)
    amount = np.where(digital, rng.choice([0.79, 0.99, 1.49, 1.99, 2.99, 4.99], n), amount)
    # At home people keep to a few nearby branches; abroad any branch will do.
    nearby = (cu["local"][c] + rng.choice(3, size=n, p=[0.6, 0.3, 0.1])) % OUTLETS
    merchant = np.where(country == cu["home"][c], nearby, rng.integers(0, OUTLETS, n))
    return dict(customer=c, seconds=day * DAY + hour * 3600, amount=amount, category=category,
                country=country, channel=channel, merchant=merchant, pattern=np.zeros(n, dtype=int))


def _incidents(rng: np.random.Generator, n_rows: int, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Split n_rows into incidents of lo..hi rows (the last may be cut short).

    Returns each row's incident index, its position within the incident, and the incident count.
    """
    if n_rows == 0:
        return np.zeros(0, dtype=int), np.zeros(0, dtype=int), 0
    sizes = rng.integers(lo, hi + 1, size=n_rows)  # n_rows incidents always cover n_rows rows
    sizes = sizes[: np.searchsorted(np.cumsum(sizes), n_rows) + 1]
    sizes[-1] -= sizes.sum() - n_rows
    incident = np.repeat(np.arange(len(sizes)), sizes)
    return incident, np.arange(n_rows) - (np.cumsum(sizes) - sizes)[incident], len(sizes)


def _fraud(rng: np.random.Generator, cu: Arrays, legit: Arrays, n_fraud: int, days: int) -> Arrays:
    n_customers, n_countries = len(cu["home"]), len(COUNTRIES)
    used_country = np.zeros((n_customers, n_countries), dtype=bool)
    used_country[legit["customer"], legit["country"]] = True
    used_category = np.zeros((n_customers, len(CATEGORIES)), dtype=bool)
    used_category[legit["customer"], legit["category"]] = True
    used_category[:, ATM] = True  # a big ATM withdrawal is skimming's signature, not a spike
    # Cumulative rounding so the per-pattern budgets add up to exactly n_fraud rows.
    shares = np.cumsum([0.0] + [share for share, _, _ in FRAUD_MIX.values()])
    budgets = np.diff(np.round(shares * n_fraud).astype(int))
    parts = []
    for p, (name, (_, lo, hi)) in enumerate(FRAUD_MIX.items(), start=1):
        incident, pos, n_incidents = _incidents(rng, int(budgets[p - 1]), lo, hi)
        victim = rng.integers(0, n_customers, n_incidents)
        at_home = np.arange(n_countries) == cu["home"][victim, None]
        # Drawn per incident, then spread to its rows: a burst shares its day, start and place.
        day, start = rng.integers(0, days, n_incidents)[incident], rng.random(n_incidents)[incident]
        abroad = _pick_excluding(rng, at_home)[incident]
        never_used = _pick_excluding(rng, at_home | used_country[victim])[incident]
        new_category = _pick_excluding(rng, used_category[victim])[incident]
        c = victim[incident]
        n, typical = len(c), cu["typical"][c]
        if name == "card_testing":  # a bot checks stolen numbers with tiny payments anywhere
            seconds = (day + start) * DAY + pos * 60 + rng.integers(0, 60, n)
            amount = rng.uniform(0.5, 3.0, n)
            category = np.where(rng.random(n) < 0.5, ONLINE_RETAIL, ENTERTAINMENT)
            country, channel = rng.integers(0, n_countries, n), np.full(n, ONLINE)
        elif name == "account_takeover":  # the fraudster cashes out while the victim sleeps
            seconds = (day + start * 5 / 24) * DAY + pos * rng.integers(300, 1800, n)
            amount = typical * rng.uniform(12, 50, n)
            category = np.where(rng.random(n) < 0.5, TRAVEL, ELECTRONICS)
            country, channel = abroad, np.full(n, ONLINE)
        elif name == "skimming":  # a cloned card emptied at ATMs, hours apart
            seconds = (day + start) * DAY + pos * rng.integers(900, 3600, n)
            amount = rng.choice([100.0, 200.0, 250.0, 300.0, 400.0, 500.0], n)
            category, country, channel = np.full(n, ATM), never_used, np.full(n, ATM_CHANNEL)
        else:  # unusual_category_spike: the stolen card looks normal except for what it buys
            hour = np.clip(rng.normal(cu["hour_centre"][c], cu["hour_spread"][c]), 0, 23.99)
            seconds = day * DAY + hour * 3600
            amount = typical * rng.uniform(6, 20, n)
            category, country = new_category, cu["home"][c]
            online = (category == ONLINE_RETAIL) | (rng.random(n) < 0.5 * ONLINE_AFFINITY[category])
            channel = np.where(online, ONLINE, POS)
        parts.append(dict(customer=c, seconds=seconds, amount=amount, category=category, country=country,
                          channel=channel, merchant=rng.integers(0, OUTLETS, n), pattern=np.full(n, p)))
    return {key: np.concatenate([part[key] for part in parts]) for key in legit}


def generate_transactions(n_customers: int = 2000, days: int = 7, start: str = "2026-01-01",
                          fraud_rate: float = 0.005, seed: int = 0) -> pd.DataFrame:
    """Card transactions of ``n_customers`` over ``days`` days from ``start``, sorted by time.

    About 1.9 legitimate transactions per customer and day, plus fraud rows making up
    ``fraud_rate`` of the total (exact up to rounding to whole rows). Deterministic per ``seed``.
    """
    if n_customers < 1 or days < 1 or not 0.0 <= fraud_rate < 1.0:
        raise ValueError("need n_customers >= 1, days >= 1 and 0 <= fraud_rate < 1")
    rng = np.random.default_rng(seed)
    cu = _customers(rng, n_customers, days)
    legit = _legitimate(rng, cu, days)
    fraud = _fraud(rng, cu, legit, round(fraud_rate * len(legit["customer"]) / (1.0 - fraud_rate)), days)
    rows = {key: np.concatenate([legit[key], fraud[key]]) for key in legit}
    seconds = np.minimum(rows["seconds"], days * DAY - 1).astype(np.int64)  # bursts stay in range
    order = np.argsort(seconds, kind="stable")
    rows = {key: values[order] for key, values in rows.items()}
    c = rows["customer"]
    timestamp = (pd.Timestamp(start) + pd.to_timedelta(seconds[order], unit="s")).as_unit("ns")
    return pd.DataFrame({
        "transaction_id": [f"tx{i:09d}" for i in range(len(c))],
        "customer_id": np.array([f"c{i:06d}" for i in range(n_customers)], dtype=object)[c],
        "timestamp": timestamp,
        "amount": np.round(np.maximum(rows["amount"], 0.5), 2),
        "merchant": MERCHANTS[rows["country"], rows["category"], rows["merchant"]],
        "merchant_category": np.array(CATEGORIES, dtype=object)[rows["category"]],
        "country": np.array(COUNTRIES, dtype=object)[rows["country"]],
        "channel": np.array(CHANNELS, dtype=object)[rows["channel"]],
        "card_present": rows["channel"] != ONLINE,
        "hour": timestamp.hour.to_numpy().astype(np.int64),
        "home_country": np.array(COUNTRIES, dtype=object)[cu["home"][c]],
        "customer_typical_amount": cu["typical"][c],
        "is_fraud": (rows["pattern"] > 0).astype(np.int64),
        "fraud_pattern": np.array(PATTERNS, dtype=object)[rows["pattern"]],
    })
