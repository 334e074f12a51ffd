"""How the schemas' fields are written in the OpenAPI document, where their marshmallow types do not say it.

Python's regex anchors become ECMA-262 ones, an interval states exactly which texts and integers it
takes, a time zone refers to the one list of zone names, and a query parameter is described as the
text a query string carries.
"""
import functools

from canary.statistics.buckets import UNIT_SECONDS
from schemas import MAX_EPOCH_SECONDS, IntervalField, TimeZoneField, zone_names

TIME_ZONE_REF = {"$ref": "#/components/schemas/TimeZone"}


def register(spec, marshmallow):
    """Teach the spec's marshmallow converter these fields, and add the components they refer to."""
    marshmallow.converter.add_attribute_function(ecma_pattern)
    marshmallow.converter.add_attribute_function(custom_fields)
    spec.components.schema("TimeZone", {"type": "string", "enum": sorted(zone_names()),
                                        "description": "An IANA time zone name."})


def ecma_pattern(self, field, ret, **kwargs):
    """Write Python's \\A...\\Z anchors as the ^...$ that JSON Schema's ECMA-262 patterns use."""
    pattern = ret.get("pattern")
    if pattern and pattern.startswith(r"\A") and pattern.endswith(r"\Z"):
        return {"pattern": "^" + pattern[2:-2] + "$"}
    return {}


def custom_fields(self, field, **kwargs):
    """Describe the fields whose values JSON Schema cannot take from their marshmallow type."""
    if isinstance(field, IntervalField):
        return {"anyOf": [{"type": "integer", "minimum": 1, "maximum": MAX_EPOCH_SECONDS},
                          {"type": "string", "pattern": interval_text_pattern()}]}
    if isinstance(field, TimeZoneField):  # some 600 names: listed once, in components
        return {"allOf": [TIME_ZONE_REF]}
    return {}


def as_query_text(schema):
    """Return a parameter's schema as a query string carries it: always text, never null."""
    schema = {key: value for key, value in schema.items() if key != "nullable"}
    if "enum" in schema:
        schema["enum"] = [value for value in schema["enum"] if value is not None]
    texts = [branch for branch in schema.get("anyOf", []) if branch.get("type") == "string"]
    if texts:
        del schema["anyOf"]
        schema.update(texts[0])
    return schema


def _digits(count):
    """Return a regex of `count` digits."""
    return "" if count == 0 else "[0-9]" if count == 1 else f"[0-9]{{{count}}}"


def _amounts(lengths, largest, width):
    """Return a regex of the amounts with these numbers of significant digits, up to `largest`, written in
    at most `width` digits: IntervalField reads leading zeros within that width."""
    top, alternatives = str(largest), []
    for length in lengths:
        zeros = f"0{{0,{width - length}}}"
        if length < len(top):
            alternatives.append(zeros + "[1-9]" + _digits(length - 1))
            continue
        # As many digits as the largest: below it at the first digit that differs, or the largest itself.
        below = [top[:index] + f"[{int(index == 0)}-{int(digit) - 1}]" + _digits(len(top) - index - 1)
                 for index, digit in enumerate(top) if int(digit) > int(index == 0)]
        alternatives.append(zeros + f"(?:{'|'.join([*below, top])})")
    return "|".join(alternatives)


@functools.cache
def interval_text_pattern():
    """Return an ECMA-262 regex of exactly the interval texts IntervalField accepts, as a query string sends them.

    Amounts of up to `common` significant digits fit every unit; longer ones are bounded by each
    unit's largest amount: MAX_EPOCH_SECONDS in whole units.
    """
    width = IntervalField.DIGITS
    largest = {unit: MAX_EPOCH_SECONDS // seconds for unit, seconds in UNIT_SECONDS.items() if unit}
    common = len(str(min(largest.values()))) - 1
    branches = [f"(?:{_amounts(range(1, common + 1), 10**common, width)})[smhdw]?"]
    branches += [f"(?:{_amounts(range(common + 1, len(str(largest[unit])) + 1), largest[unit], width)})"
                 + (f"{unit}?" if unit == "s" else unit) for unit in "smhdw"]
    return f"^(?:{'|'.join(branches)})$"
