"""Brute-force answers for bucketed statistics, built without buckets.py or metrics.py."""
import datetime as dt
import itertools
import statistics

ORIGIN = dt.date(1969, 12, 29)  # the Monday the README counts calendar buckets from
UNITS = {"": 1, "s": 1, "m": 60, "h": 3600}
DAYS = {"d": 1, "w": 7}


def number(value):
    """Python's statistics gives floats for whole means and medians; the API sends those as ints."""
    return int(value) if value == int(value) else float(value)


def local_day(instant, zone):
    return (dt.datetime.fromtimestamp(instant, zone).date() - ORIGIN).days


def first_instant_of(day, zone):
    """The first epoch second whose local date is `day` or later, by bisection over four days."""
    naive = dt.datetime.combine(ORIGIN + dt.timedelta(days=day), dt.time()).replace(tzinfo=dt.UTC)
    low, high = int(naive.timestamp()) - 2 * 86_400, int(naive.timestamp()) + 2 * 86_400
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if local_day(middle, zone) >= day else (middle, high)
    return high


def split(interval):
    """(amount, unit) of an interval as the API takes it: an int, or a string such as 5m or 1d."""
    if isinstance(interval, int):
        return interval, ""
    text = str(interval)
    return (int(text[:-1]), text[-1]) if text[-1] in "smhdw" else (int(text), "")


def edges(interval, zone, first, last):
    """The edges from the bucket holding `first` to the one holding `last`."""
    amount, unit = split(interval)
    if unit in DAYS:
        days = amount * DAYS[unit]
        numbers = range(local_day(first, zone) // days, local_day(last, zone) // days + 2)
        return [first_instant_of(k * days, zone) for k in numbers]
    width = amount * UNITS[unit]
    return [k * width for k in range(first // width, last // width + 2)]


def describe(values):
    """Count and statistics of a list of values, as a bucket of the series states them."""
    if not values:
        return {"count": 0, "min": None, "max": None, "mean": None, "median": None, "mode": None,
                "quartile_1": None, "quartile_3": None}
    ordered = sorted(values)
    half = (len(ordered) + 1) // 2
    return {
        "count": len(values),
        "min": min(values),
        "max": max(values),
        "mean": number(statistics.mean(values)),
        "median": number(statistics.median(values)),
        "mode": min(statistics.multimode(values)),
        "quartile_1": number(statistics.median(ordered[:half])),
        "quartile_3": number(statistics.median(ordered[len(ordered) - half:])),
    }


def series(readings, interval, zone, start=None, end=None, keep_empty=True):
    """The buckets of a series over (value, date_created) pairs of one type."""
    inside = [(value, date) for value, date in readings
              if (start is None or date >= start) and (end is None or date <= end)]
    dates = [date for _, date in inside]
    first = start if start is not None else min(dates, default=None)
    last = end if end is not None else max(dates, default=None)
    if first is None or last is None:
        return []
    bounds = edges(interval, zone, first, last)
    result = []
    for low, high in itertools.pairwise(bounds):
        values = [value for value, date in inside if low <= date < high]
        if values or keep_empty:
            result.append({"start": low, "end": high, **describe(values)})
    return result


def summary(readings, kind, start=None, end=None, limit=None):
    """The fleet summary over (device_uuid, type, value, date_created) readings."""
    values = {}
    for device, reading_type, value, date in readings:
        if reading_type == kind and (start is None or date >= start) and (end is None or date <= end):
            values.setdefault(device, []).append(value)
    rows = []
    for device, device_values in values.items():
        stats = describe(device_values)
        rows.append({"device_uuid": device, "number_of_readings": stats["count"],
                     "max_reading_value": stats["max"], "median_reading_value": stats["median"],
                     "mean_reading_value": stats["mean"], "quartile_1_value": stats["quartile_1"],
                     "quartile_3_value": stats["quartile_3"]})
    rows.sort(key=lambda row: (-row["number_of_readings"], row["device_uuid"]))
    return rows[:limit]
