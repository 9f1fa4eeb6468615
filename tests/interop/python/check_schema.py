"""Validates messages against docs/protocol.schema.json with the `jsonschema`
package. Reads JSON lines from stdin, each {"kind": "client" | "server" |
"result" | "invalid", "op": OP?, "message": ...}: client requests against
ClientMessage ("invalid" ones must fail it),
server messages against ServerMessage, and a reply's result against the result
type of its operation. Prints `ok N` or the first failures, exiting 1."""
import json
import sys

import jsonschema

root = json.load(open(sys.argv[1]))
validator_class = jsonschema.Draft202012Validator
validator_class.check_schema(root)


def validator(pointer):
    schema = dict(root)
    schema["$ref"] = pointer
    return validator_class(schema)


client = validator("#/ClientMessage")
server = validator("#/ServerMessage")
results = {op: validator(f"#/results/{op}") for op in root["results"]}

failures = []
count = 0
for line in sys.stdin:
    if not line.strip():
        continue
    item = json.loads(line)
    kind, message = item["kind"], item["message"]
    if kind == "invalid":
        count += 1
        if client.is_valid(message):
            failures.append(f"accepted an invalid request: {json.dumps(message)}")
        continue
    if kind == "client":
        check = client
    elif kind == "server":
        check = server
    else:
        check = results[item["op"]]
    errors = [e.message for e in check.iter_errors(message)]
    count += 1
    if errors:
        failures.append(f"{kind} {item.get('op', '')} {json.dumps(message)}: {errors}")
if failures:
    print("\n".join(failures[:20]))
    sys.exit(1)
print(f"ok {count}")
