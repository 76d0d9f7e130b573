#!/usr/bin/env python3
"""Validate activity-sync records against the JSON Schemas in docs/schemas.

Usage:
    scripts/validate-records.py SCHEMA_DIR [FILE ...]      (JSON lines from the FILEs, or from stdin)

Each input line is one JSON object describing one record:

    {"schema": "activity", "value": {...}}                 the record, already parsed
    {"schema": "job", "valueText": "{\"type\":\"sync\"…}"}  the record's bytes as text (checks it parses, too)
    {"topic": "activity-sync.state", "key": "583231", "value": {...}, "headers": {...}, "where": "e2e#17"}

  schema    a schema name: the file SCHEMA_DIR/<schema>.schema.json (job, activity, state, account,
            account-setup, dead-letter, status, run). Either this or `topic`.
  topic     a topic name; the schema follows from its suffix: .accounts→account, .jobs→job,
            .activities→activity, .state→state, .jobs.dlq→dead-letter, .status→status, .runs→run.
  value     the decoded record. null is a tombstone: valid on compacted topics (account, state, status) only.
  valueText the record's bytes as a UTF-8 string, instead of `value`.
  key       optional. When given for an accountId-keyed record (all but dead-letter and account-setup), it must
            equal the record's accountId: jobs and state are co-partitioned by that key.
  headers   optional, as {"name": "value"} or [["name", "value"]] or [{"key": "name", "value": "value"}].
            activity and state records must then carry the CloudEvents headers (ce_specversion 1.0, ce_id, ce_source,
            ce_type, ce_time), an activity's ce_id must equal its id; dead letters must carry the dlq_* headers.
  where     optional label echoed in error messages (e.g. "activities/3@17"); without it, a line with
            topic, partition and offset is named "topic/partition@offset".

The lines `activity-sync tail TOPIC` prints ({topic, partition, offset, key, headers, value}) are valid input
as they are:  activity-sync tail activities --from-beginning --idle-timeout 5 | scripts/validate-records.py docs/schemas

Output: one line per problem, "line N [where] schema: path - message", then a summary line
"validated N records, M invalid". Exit status: 0 all valid, 1 some record invalid, 2 bad input or usage
(a line that is not JSON, an unknown schema or topic, a missing schema directory).

Needs Python 3 with jsonschema 4.x (scripts/ensure-deps installs it).
"""

import json
import os
import sys

try:
    import jsonschema
except ImportError:  # pragma: no cover - environment problem, not a record problem
    print("validate-records: python module 'jsonschema' is missing (pip install jsonschema)", file=sys.stderr)
    sys.exit(2)

TOPIC_SUFFIXES = [  # longest first: ".jobs.dlq" must win over ".jobs"
    (".jobs.dlq", "dead-letter"),
    (".accounts", "account"),
    (".jobs", "job"),
    (".activities", "activity"),
    (".state", "state"),
    (".status", "status"),
    (".runs", "run"),
]
COMPACTED = {"account", "state", "status"}
ENVELOPED = {"activity", "account", "account-setup", "dead-letter", "status", "run"}
KEYED_BY_ACCOUNT = {"job", "activity", "state", "account", "status", "run"}
CLOUD_EVENTS = ["ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time"]
DLQ_HEADERS = ["dlq_reason", "dlq_code", "dlq_original_topic", "dlq_original_partition", "dlq_original_offset",
               "dlq_worker_id"]


class InputError(Exception):
    pass


def load_schemas(directory):
    if not os.path.isdir(directory):
        raise InputError(f"schema directory not found: {directory}")
    validators = {}
    for name in sorted(os.listdir(directory)):
        if not name.endswith(".schema.json"):
            continue
        with open(os.path.join(directory, name), encoding="utf-8") as f:
            schema = json.load(f)
        jsonschema.Draft202012Validator.check_schema(schema)
        validators[name[: -len(".schema.json")]] = jsonschema.Draft202012Validator(schema)
    if not validators:
        raise InputError(f"no *.schema.json files in {directory}")
    return validators


def schema_for_topic(topic):
    for suffix, schema in TOPIC_SUFFIXES:
        if topic.endswith(suffix):
            return schema
    raise InputError(f"unknown topic {topic!r}: expected a name ending in "
                     + ", ".join(s for s, _ in TOPIC_SUFFIXES))


def normalise_headers(headers):
    if isinstance(headers, dict):
        return {str(k): v for k, v in headers.items()}
    result = {}
    if isinstance(headers, list):
        for item in headers:
            if isinstance(item, dict) and "key" in item:
                result[str(item["key"])] = item.get("value")
            elif isinstance(item, (list, tuple)) and len(item) == 2:
                result[str(item[0])] = item[1]
            else:
                raise InputError(f"cannot read header {item!r}")
        return result
    raise InputError("headers must be an object or a list")


def record_account_id(schema, value):
    body = value.get("data") if schema in ENVELOPED else value
    return body.get("accountId") if isinstance(body, dict) else None


def check_line(entry, validators):
    """Returns a list of (path, message) problems for one input entry."""
    if not isinstance(entry, dict):
        raise InputError("each line must be a JSON object")
    if "schema" in entry:
        schema = entry["schema"]
    elif "topic" in entry:
        schema = schema_for_topic(str(entry["topic"]))
    else:
        raise InputError("each line needs a 'schema' or a 'topic'")
    if schema not in validators:
        raise InputError(f"unknown schema {schema!r}; known: {', '.join(sorted(validators))}")

    if "valueText" in entry:
        text = entry["valueText"]
        if text is None:
            value = None
        else:
            try:
                value = json.loads(text)
            except (TypeError, ValueError) as error:
                return schema, [("<value>", f"not JSON: {error}")]
    elif "value" in entry:
        value = entry["value"]
    else:
        raise InputError("each line needs a 'value' or a 'valueText'")

    if value is None:
        if schema in COMPACTED:
            return schema, []
        return schema, [("<value>", f"a null value (tombstone) is only valid on compacted topics, not for {schema}")]

    problems = [("/".join(map(str, e.absolute_path)) or "<root>", e.message)
                for e in sorted(validators[schema].iter_errors(value), key=lambda e: list(e.absolute_path))]
    if problems or not isinstance(value, dict):
        return schema, problems

    key = entry.get("key")
    if key is not None and schema in KEYED_BY_ACCOUNT:
        account_id = record_account_id(schema, value)
        if key != account_id:
            problems.append(("<key>", f"key {key!r} differs from accountId {account_id!r}"))

    if entry.get("headers") is not None:
        headers = normalise_headers(entry["headers"])
        if schema in ("activity", "state"):
            for name in CLOUD_EVENTS:
                if name not in headers:
                    problems.append(("<headers>", f"missing CloudEvents header {name}"))
            if headers.get("ce_specversion", "1.0") != "1.0":
                problems.append(("<headers>", f"ce_specversion is {headers['ce_specversion']!r}, expected '1.0'"))
            if schema == "activity" and "ce_id" in headers and headers["ce_id"] != value["data"]["id"]:
                problems.append(("<headers>", f"ce_id {headers['ce_id']!r} differs from the activity id"))
        if schema == "dead-letter":
            for name in DLQ_HEADERS:
                if name not in headers:
                    problems.append(("<headers>", f"missing dead-letter header {name}"))
    return schema, problems


def main(argv):
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        print(__doc__.strip(), file=sys.stderr if len(argv) < 2 else sys.stdout)
        return 2 if len(argv) < 2 else 0
    try:
        validators = load_schemas(argv[1])
    except (InputError, ValueError, jsonschema.SchemaError) as error:
        print(f"validate-records: {error}", file=sys.stderr)
        return 2

    streams = [open(path, encoding="utf-8") for path in argv[2:]] or [sys.stdin]
    total = invalid = 0
    bad_input = False
    for stream in streams:
        for number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            total += 1
            where = ""
            try:
                entry = json.loads(line)
                if isinstance(entry, dict) and entry.get("where") is not None:
                    where = f" [{entry['where']}]"
                elif isinstance(entry, dict) and "topic" in entry and "offset" in entry:
                    # `activity-sync tail` lines carry their position: name the record by it.
                    where = f" [{entry['topic']}/{entry.get('partition')}@{entry['offset']}]"
                schema, problems = check_line(entry, validators)
            except (InputError, ValueError) as error:
                print(f"line {number}{where}: bad input: {error}")
                bad_input = True
                continue
            if problems:
                invalid += 1
                for path, message in problems:
                    print(f"line {number}{where} {schema}: {path} - {message[:300]}")
    print(f"validated {total} records, {invalid} invalid")
    if bad_input:
        return 2
    return 1 if invalid else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
