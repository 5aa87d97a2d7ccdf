//! Which secrets a scheduled run manages: the payload's, else `DKIM_SECRET_IDS` plus every
//! secret tagged `DKIM_SECRET_TAG`; each once.

use std::collections::HashSet;

use super::{Rotator, ScheduledRun};
use crate::engine::ports::Ports;
use crate::error::AppError;
use crate::notifications::Notifier;
use crate::work_queue::WorkQueue;

/// The error of a run with nothing to manage.
pub(crate) fn nothing_to_manage() -> AppError {
    AppError::InvalidSetting {
        name: "DKIM_SECRET_IDS",
        reason: "a scheduled run has no secrets to manage: set DKIM_SECRET_IDS (comma list) and/or DKIM_SECRET_TAG (key=value), or pass secret_ids".into(),
    }
}

/// What names one secret, however it is written: a secret's name (`dkim/example.com`) and its
/// full ARN in the function's region (`arn:aws:secretsmanager:<region>:<account>:secret:
/// dkim/example.com-AbCdEf`: Secrets Manager appends a hyphen and six random characters) give
/// the same key; an ARN in another region keeps the whole ARN (a name means this region's). A
/// partial ARN whose name itself ends in a hyphen and six letters or digits reads as a full
/// one: the ambiguity AWS warns of for partial ARNs.
pub(crate) fn secret_key(secret_id: &str, home_region: &str) -> String {
    let Some((prefix, resource)) = secret_id
        .strip_prefix("arn:")
        .and_then(|rest| rest.split_once(":secret:"))
    else {
        return secret_id.to_owned();
    };
    let region = prefix.split(':').nth(2);
    if region != Some(home_region) {
        return secret_id.to_owned();
    }
    let name = match resource.rsplit_once('-') {
        Some((name, suffix))
            if suffix.len() == 6 && suffix.bytes().all(|b| b.is_ascii_alphanumeric()) =>
        {
            name
        }
        _ => resource,
    };
    name.to_owned()
}

/// `items` with each secret once (the first seen is kept), in order; a name and the ARN of
/// the same secret count once ([`secret_key`]). The one dedupe.
pub(crate) fn each_secret_once<T>(
    items: Vec<T>,
    home_region: &str,
    secret_id: impl Fn(&T) -> &str,
) -> Vec<T> {
    let mut seen = HashSet::new();
    items
        .into_iter()
        .filter(|item| seen.insert(secret_key(secret_id(item), home_region)))
        .collect()
}

impl<P: Ports, N: Notifier, Q: WorkQueue> Rotator<P, N, Q> {
    /// The secrets a scheduled run manages: the payload's, else `DKIM_SECRET_IDS` plus every
    /// secret tagged `DKIM_SECRET_TAG`, without duplicates.
    pub async fn managed_secrets(&self, run: &ScheduledRun) -> Result<Vec<String>, AppError> {
        if let Some(ids) = &run.secret_ids {
            return Ok(each_secret_once(
                ids.clone(),
                &self.fleet.home_region,
                String::as_str,
            ));
        }
        let mut ids = self.fleet.secret_ids.clone();
        if let Some((key, value)) = &self.fleet.secret_tag {
            let listed = self.engine.list_tagged(key, value).await?;
            ids.extend(listed.into_iter().map(|secret| secret.arn));
        }
        if ids.is_empty() {
            return Err(nothing_to_manage());
        }
        Ok(each_secret_once(
            ids,
            &self.fleet.home_region,
            String::as_str,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOME: &str = "us-east-1";

    #[test]
    fn a_name_and_its_arn_name_one_secret() {
        let arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:dkim/example.com-AbC123";
        assert_eq!(secret_key(arn, HOME), secret_key("dkim/example.com", HOME));
        let ids = vec![
            "dkim/example.com".to_owned(),
            arn.to_owned(),
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:dkim/example.com-AbC123"
                .to_owned(),
            "dkim/other.example".to_owned(),
        ];
        let once = each_secret_once(ids, HOME, String::as_str);
        assert_eq!(once.len(), 3, "{once:?}");
        assert_eq!(once[0], "dkim/example.com", "the first seen is kept");
    }

    #[test]
    fn only_a_six_character_suffix_is_taken_off() {
        let partial = "arn:aws:secretsmanager:us-east-1:1:secret:dkim/mail-example";
        assert_eq!(secret_key(partial, HOME), "dkim/mail-example");
        let full = "arn:aws:secretsmanager:us-east-1:1:secret:dkim/mail-example-Zz9Zz9";
        assert_eq!(secret_key(full, HOME), "dkim/mail-example");
    }
}
