#!/usr/bin/env python3
"""The template's grants match what the code does, and no more (run by `make test`).

cfn-lint proves the template is valid CloudFormation; this proves its least-privilege claims:

- Route 53: the function may change TXT records named `*._domainkey.*` only, with the actions
  the Route 53 adapter sends (`ChangeAction::…` in src/adapters/dns/route53.rs) and no other;
- Secrets Manager `TagResource`: only with tag keys under the rotator's prefix, and every tag
  the engine writes (`TAG_…` in src/engine/tags.rs) is under it;
- the work queue: a policy that refuses `sqs:SendMessage` from every principal but the
  function's role (and `QueueSenderArns`), and plain-HTTP access;
- the notification topic: a policy that admits only the function's role and this account's
  CloudWatch alarms to publish.

IAM's evaluation of these policies is AWS's and is not run here (see the README's assumed
behaviours); what is checked is that the statements say what the docs say they say.

  check_template.py [template.yaml]
Exit 0 when every claim holds; 1 with the failed claims.
"""
import re
import sys
from pathlib import Path

from cfnlint.decode import decode

ROOT = Path(__file__).resolve().parent.parent
FAILURES = []


def claim(ok, what):
    print(f"  {'ok  ' if ok else 'FAIL'} {what}")
    if not ok:
        FAILURES.append(what)


def unwrap(node):
    """The statement inside `Fn::If [cond, statement, NoValue]`, or the node itself."""
    if isinstance(node, dict) and set(node) == {"Fn::If"}:
        return node["Fn::If"][1]
    return node


def as_list(value):
    return value if isinstance(value, list) else [value]


def role_statements(template):
    policies = template["Resources"]["RotatorRole"]["Properties"]["Policies"]
    return [unwrap(s) for p in policies for s in p["PolicyDocument"]["Statement"]]


def names_role(value):
    """Whether a principal/condition value is (or contains) the function role's ARN."""
    text = repr(value)
    return "RotatorRole" in text and "Arn" in text


def main():
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "template.yaml"
    template, errors = decode(str(path))
    if errors:
        print(f"cannot read {path}: {errors}")
        return 1
    statements = role_statements(template)

    print("Route 53")
    r53 = [s for s in statements if "route53:ChangeResourceRecordSets" in as_list(s.get("Action"))]
    claim(len(r53) == 1, "one statement grants route53:ChangeResourceRecordSets")
    condition = r53[0].get("Condition", {}) if r53 else {}
    equals = condition.get("ForAllValues:StringEquals", {})
    like = condition.get("ForAllValues:StringLike", {})
    used = sorted({a.upper() for a in re.findall(
        r"ChangeAction::(\w+)", (ROOT / "src/adapters/dns/route53.rs").read_text())})
    claim(equals.get("route53:ChangeResourceRecordSetsRecordTypes") == ["TXT"], "TXT records only")
    allowed = sorted(equals.get("route53:ChangeResourceRecordSetsActions", []))
    claim(allowed == used and used,
          f"the actions the adapter sends ({', '.join(used)}) and no other ({', '.join(allowed)})")
    names = repr(like.get("route53:ChangeResourceRecordSetsNormalizedRecordNames"))
    claim("._domainkey." in names, "names under _domainkey only")

    print("Secrets Manager tags")
    tagging = [s for s in statements if "secretsmanager:TagResource" in as_list(s.get("Action"))]
    claim(len(tagging) == 1 and as_list(tagging[0]["Action"]) == ["secretsmanager:TagResource"],
          "TagResource is granted alone, in one statement")
    keys = (tagging[0].get("Condition", {}).get("ForAllValues:StringLike", {})
            .get("aws:TagKeys") if tagging else None)
    claim(keys == ["ses-dkim-rotator:*"], "only tag keys ses-dkim-rotator:*")
    written = re.findall(r'pub const TAG_\w+: &str = "([^"]+)"',
                         (ROOT / "src/engine/tags.rs").read_text())
    claim(written and all(k.startswith("ses-dkim-rotator:") for k in written),
          f"every tag the engine writes ({len(written)}) is under that prefix")

    resources = template["Resources"]
    print("work queue")
    queue = [r for r in resources.values() if r["Type"] == "AWS::SQS::QueuePolicy"]
    claim(len(queue) == 1, "one queue policy")
    qs = queue[0]["Properties"]["PolicyDocument"]["Statement"] if queue else []
    deny_send = [s for s in qs if s["Effect"] == "Deny" and s.get("Principal") == "*"
                 and "sqs:SendMessage" in as_list(s["Action"])
                 and names_role(s.get("Condition", {}).get("ArnNotEquals", {})
                                .get("aws:PrincipalArn"))]
    claim(len(deny_send) == 1, "SendMessage refused to every principal but the function's role")
    claim(any(s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"
              and s["Effect"] == "Deny" for s in qs), "plain HTTP refused")
    claim(queue and queue[0]["Properties"]["Queues"] == [{"Ref": "WorkQueue"}],
          "the policy is the work queue's")

    print("notification topic")
    topic = [r for r in resources.values() if r["Type"] == "AWS::SNS::TopicPolicy"]
    claim(len(topic) == 1, "one topic policy (it replaces SNS's default, open to the account)")
    ts = topic[0]["Properties"]["PolicyDocument"]["Statement"] if topic else []
    allows = [s for s in ts if s["Effect"] == "Allow"]
    claim(allows and all(names_role(s["Principal"].get("AWS"))
                         or s["Principal"].get("Service") == "cloudwatch.amazonaws.com"
                         for s in allows),
          "only the function's role and CloudWatch are admitted")
    claim(all(as_list(s["Action"]) == ["sns:Publish"] for s in allows), "to publish, nothing else")
    cloudwatch = [s for s in allows if s["Principal"].get("Service") == "cloudwatch.amazonaws.com"]
    claim(cloudwatch and "aws:SourceAccount" in repr(cloudwatch[0].get("Condition")),
          "CloudWatch only for this account's alarms")

    print(f"template: {'every claim holds' if not FAILURES else f'{len(FAILURES)} claims fail'}")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
