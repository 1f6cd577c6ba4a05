"""Drive surge with the real AWS SDK for Python (boto3), as a user would: argv[1] is the
endpoint. Prints one JSON line of observations for the Rust test to check."""
import base64
import json
import sys
import time

import boto3
from botocore.config import Config

c = boto3.client(
    "lambda",
    endpoint_url=sys.argv[1],
    region_name="us-east-1",
    aws_access_key_id="test",
    aws_secret_access_key="test",
    config=Config(retries={"max_attempts": 1}),
)
seen = {}
r = c.invoke(FunctionName="echo", Payload=json.dumps({"a": 1}))
seen["echo"] = [r["StatusCode"], r["Payload"].read().decode(), r.get("FunctionError"), r.get("ExecutedVersion")]
r = c.invoke(FunctionName="memhog", Payload=json.dumps({"mib": 500}), LogType="Tail")
seen["memhog"] = [r["StatusCode"], json.loads(r["Payload"].read())["errorType"], r.get("FunctionError"),
                  base64.b64decode(r["LogResult"]).decode()]
try:
    c.invoke(FunctionName="nope", Payload=b"{}")
    seen["missing"] = "no error"
except c.exceptions.ResourceNotFoundException as e:
    seen["missing"] = "ResourceNotFoundException"
r = c.invoke(FunctionName="echo", Payload=b"{}", InvocationType="Event")
seen["event"] = r["StatusCode"]
# The control plane's reads: ListFunctions paged one at a time by boto3's paginator,
# GetFunction and GetFunctionConfiguration.
pages = list(c.get_paginator("list_functions").paginate(PaginationConfig={"PageSize": 1}))
seen["pages"] = [[f["FunctionName"] for f in p["Functions"]] for p in pages]
conf = c.get_function(FunctionName="echo")["Configuration"]
seen["echo_conf"] = {k: conf.get(k) for k in (
    "FunctionName", "FunctionArn", "CodeSha256", "CodeSize", "MemorySize", "Timeout", "Handler",
    "Environment", "State", "LastUpdateStatus", "Version", "LastModified", "RevisionId")}
seen["memhog_conf"] = c.get_function_configuration(
    FunctionName="arn:aws:lambda:us-east-1:000000000000:function:memhog")["FunctionName"]
try:
    c.get_function(FunctionName="nope")
    seen["get_missing"] = "no error"
except c.exceptions.ResourceNotFoundException:
    seen["get_missing"] = "ResourceNotFoundException"
# The event-invoke config: Put overwrites, Update merges, Get, List, Delete; a value out of
# Lambda's bounds is the service's InvalidParameterValueException.
failed = "arn:aws:sqs:us-east-1:000000000000:failed"
put = c.put_function_event_invoke_config(
    FunctionName="echo", MaximumRetryAttempts=1,
    DestinationConfig={"OnFailure": {"Destination": failed}})
upd = c.update_function_event_invoke_config(FunctionName="echo", MaximumEventAgeInSeconds=120)
got = c.get_function_event_invoke_config(FunctionName="echo")
listed = c.list_function_event_invoke_configs(FunctionName="echo")["FunctionEventInvokeConfigs"]
try:
    c.put_function_event_invoke_config(FunctionName="echo", MaximumRetryAttempts=5)
    bad = "no error"
except c.exceptions.InvalidParameterValueException as e:
    bad = "InvalidParameterValueException"
c.delete_function_event_invoke_config(FunctionName="echo")
try:
    c.get_function_event_invoke_config(FunctionName="echo")
    gone = "no error"
except c.exceptions.ResourceNotFoundException:
    gone = "ResourceNotFoundException"
seen["event_invoke_config"] = {
    "put": [put["MaximumRetryAttempts"], put["DestinationConfig"]["OnFailure"]["Destination"]],
    "update": [upd["MaximumRetryAttempts"], upd["MaximumEventAgeInSeconds"],
               upd["DestinationConfig"]["OnFailure"]["Destination"]],
    "get": [got["FunctionArn"], got["MaximumEventAgeInSeconds"], got["LastModified"].year >= 2024],
    "list": [x["MaximumRetryAttempts"] for x in listed],
    "bad": bad,
    "deleted": gone,
}
# Concurrency: reserved 0 throttles every invocation with Lambda's Reason; provisioned
# concurrency keeps instances warm and reports READY once they are.
c.put_function_concurrency(FunctionName="echo", ReservedConcurrentExecutions=0)
reserved = c.get_function_concurrency(FunctionName="echo").get("ReservedConcurrentExecutions")
try:
    c.invoke(FunctionName="echo", Payload=b"{}")
    throttled = "no error"
except c.exceptions.TooManyRequestsException as e:
    throttled = [e.response["ResponseMetadata"]["HTTPStatusCode"], e.response.get("Reason")]
c.delete_function_concurrency(FunctionName="echo")
after = c.get_function_concurrency(FunctionName="echo").get("ReservedConcurrentExecutions")
again = c.invoke(FunctionName="echo", Payload=b"{}")["StatusCode"]
put = c.put_provisioned_concurrency_config(
    FunctionName="echo", Qualifier="$LATEST", ProvisionedConcurrentExecutions=2)
statuses = [put["Status"]]
deadline = time.time() + 30
while statuses[-1] != "READY" and time.time() < deadline:
    time.sleep(0.1)
    statuses.append(c.get_provisioned_concurrency_config(FunctionName="echo", Qualifier="$LATEST")["Status"])
ready = c.get_provisioned_concurrency_config(FunctionName="echo", Qualifier="$LATEST")
c.delete_provisioned_concurrency_config(FunctionName="echo", Qualifier="$LATEST")
try:
    c.get_provisioned_concurrency_config(FunctionName="echo", Qualifier="$LATEST")
    pgone = "no error"
except c.exceptions.ProvisionedConcurrencyConfigNotFoundException:
    pgone = "ProvisionedConcurrencyConfigNotFoundException"
seen["concurrency"] = {
    "reserved": reserved, "throttled": throttled, "after_delete": after, "invoke_again": again,
    "first_status": statuses[0], "last_status": statuses[-1],
    "available": ready["AvailableProvisionedConcurrentExecutions"], "deleted": pgone,
}
# The control plane's writes: a function created from a zip, waited for, invoked, given new
# code and a new configuration, published, listed by version and deleted.
import io
import os
import zipfile
repo = sys.argv[2]


def package(name):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.write(os.path.join(repo, "functions", name, f"{name}.wasm"), f"{name}.wasm")
    return buf.getvalue()


made = c.create_function(
    FunctionName="made", Runtime="provided.al2023", Role="arn:aws:iam::000000000000:role/r",
    Handler="echo.wasm", Code={"ZipFile": package("echo")}, MemorySize=128, Timeout=5,
    Environment={"Variables": {"GREETING": "hello"}})
c.get_waiter("function_active_v2").wait(FunctionName="made", WaiterConfig={"Delay": 1, "MaxAttempts": 60})
active = c.get_function(FunctionName="made")["Configuration"]
first = c.invoke(FunctionName="made", Payload=b'{"made": 1}')["Payload"].read().decode()
try:
    c.create_function(FunctionName="made", Role="r", Handler="echo.wasm", Code={"ZipFile": package("echo")})
    again = "no error"
except c.exceptions.ResourceConflictException:
    again = "ResourceConflictException"
upd = c.update_function_code(FunctionName="made", ZipFile=package("flaky"))
c.get_waiter("function_updated_v2").wait(FunctionName="made", WaiterConfig={"Delay": 1, "MaxAttempts": 60})
second = json.loads(c.invoke(FunctionName="made", Payload=b'{"id": 7}')["Payload"].read())
cfg = c.update_function_configuration(FunctionName="made", MemorySize=256, Timeout=7,
                                      Environment={"Variables": {"MODE": "b"}})
c.get_waiter("function_updated_v2").wait(FunctionName="made", WaiterConfig={"Delay": 1, "MaxAttempts": 60})
after = c.get_function_configuration(FunctionName="made")
pub = c.publish_version(FunctionName="made")
versions = [v["Version"] for v in c.list_versions_by_function(FunctionName="made")["Versions"]]
try:
    c.create_function(FunctionName="broken", Role="r", Handler="x.wasm", Code={"ZipFile": b"not a zip"})
    broken = "no error"
except c.exceptions.InvalidParameterValueException as e:
    broken = str(e)
# A package whose .wasm is not wasm passes the request's checks, and its deploy fails: the
# function is Failed with the deploy's reason, the waiter stops on it, and it is listed
# until deleted.
buf = io.BytesIO()
with zipfile.ZipFile(buf, "w") as z:
    z.writestr("bad.wasm", b"this is not wasm")
c.create_function(FunctionName="badwasm", Role="r", Handler="bad.wasm", Code={"ZipFile": buf.getvalue()})
try:
    c.get_waiter("function_active_v2").wait(FunctionName="badwasm", WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    waited = "no error"
except Exception as e:
    waited = type(e).__name__
failed = c.get_function(FunctionName="badwasm")["Configuration"]
listed_failed = [f["State"] for f in c.list_functions()["Functions"] if f["FunctionName"] == "badwasm"]
c.delete_function(FunctionName="badwasm")
gone_failed = [f["FunctionName"] for f in c.list_functions()["Functions"] if f["FunctionName"] == "badwasm"]
seen["failed_create"] = [waited, failed["State"], "bad.wasm" in failed.get("StateReason", ""),
                         listed_failed, gone_failed]
# Wrong credentials: the right key id with the wrong secret fails the signature check.
bad_client = boto3.client("lambda", endpoint_url=sys.argv[1], region_name="us-east-1",
                          aws_access_key_id="test", aws_secret_access_key="wrong",
                          config=Config(retries={"max_attempts": 1}))
try:
    bad_client.delete_function(FunctionName="made")
    denied = "no error"
except bad_client.exceptions.ClientError as e:
    denied = [e.response["ResponseMetadata"]["HTTPStatusCode"], e.response["Error"]["Code"]]
# A DeleteFunction naming a version would delete the function: refused.
try:
    c.delete_function(FunctionName="made", Qualifier="3")
    qualified = "no error"
except c.exceptions.InvalidParameterValueException:
    qualified = "InvalidParameterValueException"
still = c.get_function(FunctionName="made")["Configuration"]["State"]
c.delete_function(FunctionName="made")
try:
    c.get_function(FunctionName="made")
    deleted = "no error"
except c.exceptions.ResourceNotFoundException:
    deleted = "ResourceNotFoundException"
seen["control_plane"] = {
    "created": [made["State"], made["Runtime"], made["Handler"]],
    "active": [active["State"], active["LastUpdateStatus"], active["MemorySize"], active["Timeout"],
               active["Environment"]["Variables"]],
    "first": first, "again": again, "update_status": upd["LastUpdateStatus"],
    "second": [second.get("ok"), second.get("id")],
    "after": [after["MemorySize"], after["Timeout"], after["Environment"]["Variables"], after["LastUpdateStatus"],
              after["Runtime"]],
    "published": [pub["Version"], pub["FunctionArn"].rsplit(":", 1)[1] == pub["Version"]],
    "versions": versions, "broken": broken, "denied": denied, "qualified": qualified,
    "still": still, "deleted": deleted,
}
print(json.dumps(seen))
