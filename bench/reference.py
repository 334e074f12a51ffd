"""Reference answers straight from the raw readings, written apart from the app's code, to check its answers by."""
from fractions import Fraction


def number(fraction):
    """Return an exact value as the API writes it: an int when whole, else the nearest float."""
    fraction = Fraction(fraction)
    return fraction.numerator if fraction.denominator == 1 else float(fraction)


def histogram(database, device, kind, start, end):
    """Return the raw GROUP BY value's histogram of a window, [(value, count)] ascending."""
    return sorted(database.query("SELECT value, COUNT(*) FROM readings WHERE device_uuid = ? AND type = ? "
                                 "AND date_created BETWEEN ? AND ? GROUP BY value", (device, kind, start, end)))


def value_at(pairs, rank):
    """Return the value at a 0-based rank of a histogram."""
    for value, count in pairs:
        if rank < count:
            return value
        rank -= count
    raise IndexError(rank)


def middle(pairs, first, length):
    """Return the median of `length` sorted values from rank `first`."""
    lower = value_at(pairs, first + (length - 1) // 2)
    return number(lower) if length % 2 else number(Fraction(lower + value_at(pairs, first + length // 2), 2))


def statistics(pairs):
    """Return every statistic of a histogram, as the API's bodies state them."""
    count = sum(n for _, n in pairs)
    half = (count + 1) // 2
    return {
        "min": pairs[0][0], "max": pairs[-1][0], "count": count,
        "mean": number(Fraction(sum(v * n for v, n in pairs), count)),
        "median": middle(pairs, 0, count),
        "mode": max(pairs, key=lambda pair: pair[1])[0],
        "quartile_1": middle(pairs, 0, half), "quartile_3": middle(pairs, count - half, half),
    }


def latest_with_value(database, device, kind, start, end, value, arrival):
    """Return the date of the latest reading of a value in a window, ties by arrival (rowid or id)."""
    return database.query(f"SELECT date_created FROM readings WHERE device_uuid = ? AND type = ? AND value = ? "
                          f"AND date_created BETWEEN ? AND ? ORDER BY date_created DESC, {arrival} DESC LIMIT 1",
                          (device, kind, value, start, end))[0][0]


def check_metrics(get, database, device, kind, start, end, arrival):
    """Return the differences between the API's six statistics of a window and the raw readings' own."""
    pairs = histogram(database, device, kind, start, end)
    if not pairs:
        return []
    expected, differences = statistics(pairs), []
    query = f"?type={kind}&start={start}&end={end}"
    answers = {metric: get(f"/devices/{device}/readings/{metric}/{query}")
               for metric in ("min", "max", "median", "mean", "mode", "quartiles")}
    for metric in ("min", "max", "median", "mean", "mode"):
        if answers[metric]["value"] != expected[metric]:
            differences.append((device, kind, start, end, metric, answers[metric]["value"], expected[metric]))
    for metric in ("min", "max"):
        date = latest_with_value(database, device, kind, start, end, expected[metric], arrival)
        if answers[metric]["date_created"] != date:
            differences.append((device, kind, start, end, f"{metric} date", answers[metric]["date_created"], date))
    quartiles = (answers["quartiles"]["quartile_1"], answers["quartiles"]["quartile_3"])
    if quartiles != (expected["quartile_1"], expected["quartile_3"]):
        differences.append((device, kind, start, end, "quartiles", quartiles, expected))
    return differences


def check_series(get, database, device, kind, start, end, interval, zone):
    """Return the differences between the API's series of a window and each bucket's raw histogram."""
    answer = get(f"/devices/{device}/readings/series/?type={kind}&start={start}&end={end}&interval={interval}"
                 f"&tz={zone}&fill=none")
    differences = []
    for bucket in answer["buckets"]:
        pairs = histogram(database, device, kind, max(bucket["start"], start), min(bucket["end"] - 1, end))
        expected = statistics(pairs)
        for key in ("count", "min", "max", "mean", "median", "mode", "quartile_1", "quartile_3"):
            if bucket[key] != expected[key]:
                differences.append((device, kind, bucket["start"], interval, zone, key, bucket[key], expected[key]))
    return differences
