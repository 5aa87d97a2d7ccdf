"""AWS-side helpers for `make demo`, through boto3 against the stand-ins.

  seed DOMAIN        create the SES identity and its secret, start a rotation; print JSON
                     {"arn", "token"}
  show DOMAIN ARN    print SES's DKIM state and the secret's AWSCURRENT (without the key)
"""
import json
import sys

import boto3

ses = boto3.client("sesv2")
sm = boto3.client("secretsmanager")
FAKE_LAMBDA = "arn:aws:lambda:us-east-1:123456789012:function:ses-dkim-rotator"


def seed(domain):
    ses.create_email_identity(EmailIdentity=domain)
    arn = sm.create_secret(Name=f"dkim/{domain}", SecretString=json.dumps({"identity": domain}))["ARN"]
    # The stand-in fails the invoke of a Lambda it does not host, after staging AWSPENDING:
    # exactly the state Secrets Manager leaves before it invokes createSecret.
    try:
        sm.rotate_secret(SecretId=arn, RotationLambdaARN=FAKE_LAMBDA, RotationRules={"AutomaticallyAfterDays": 90})
    except Exception:
        pass
    stages = sm.describe_secret(SecretId=arn)["VersionIdsToStages"]
    token = next(v for v, s in stages.items() if s == ["AWSPENDING"])
    print(json.dumps({"arn": arn, "token": token}))


def show(domain, arn):
    dkim = ses.get_email_identity(EmailIdentity=domain)["DkimAttributes"]
    current = json.loads(sm.get_secret_value(SecretId=arn)["SecretString"])
    current.pop("private_key", None)
    print(json.dumps({"ses": dkim, "current": current}))


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    {"seed": seed, "show": show}[command](*args)
