//! The JSON document kept in each version of a DKIM secret (its `SecretString`).
//!
//! An operator creates the secret as `{"identity": "example.com"}`. After a rotation a version
//! also holds the key and the DNS record that publishes it:
//!
//! ```json
//! {"identity": "example.com", "selector": "ses-20261126-1a2b",
//!  "private_key": "<base64 PKCS#1 DER>", "public_key": "<base64 SPKI DER>", "key_bits": 1024,
//!  "dns_name": "ses-20261126-1a2b._domainkey.example.com",
//!  "dns_value": "v=DKIM1; k=rsa; p=<public_key>", "created_at": "2026-11-26T23:59:00Z",
//!  "previous_selector": "ses-20260828-9f9f"}
//! ```
//!
//! Fields this crate does not know are carried over unchanged into the next version. Parsing
//! never echoes a field's value in an error, so a malformed key cannot leak through a message.

use std::fmt;

use serde_json::{Map, Value};

use super::identity::DomainIdentity;
use super::key::DkimKeyPair;
use super::selector::Selector;
use crate::secret_text::SecretText;

/// Field names this crate owns; everything else is kept as it is.
const OWNED_FIELDS: [&str; 12] = [
    "region",
    "regions",
    "identity",
    "selector",
    "private_key",
    "public_key",
    "key_bits",
    "dns_name",
    "dns_value",
    "dns_record",
    "created_at",
    "previous_selector",
];

/// `<selector>._domainkey.<domain>`: where the DKIM TXT record lives.
pub fn dkim_record_name(selector: &Selector, identity: &DomainIdentity) -> String {
    format!("{selector}._domainkey.{identity}")
}

/// The DNS record that publishes a key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DnsRecord {
    /// `<selector>._domainkey.<domain>`.
    pub name: String,
    /// Always `TXT`.
    #[serde(rename = "type")]
    pub record_type: &'static str,
    /// The value, unsplit.
    pub value: String,
    /// The value as one record of quoted strings of at most 255 characters.
    pub presentation: String,
}

impl DnsRecord {
    /// The record for `key` under `identity`.
    pub fn for_key(identity: &DomainIdentity, key: &PublishedKey) -> Self {
        let value = key.key.txt_value();
        Self {
            name: key.dns_name(identity),
            record_type: "TXT",
            presentation: super::key::txt_presentation(&value),
            value,
        }
    }
}

/// A key the secret holds, with the selector it is published under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedKey {
    /// The DKIM selector.
    pub selector: Selector,
    /// The key pair (its private half is redacted in `Debug`).
    pub key: DkimKeyPair,
    /// When the key was made (RFC 3339), if recorded.
    pub created_at: Option<String>,
}

impl PublishedKey {
    /// The DNS name of the TXT record for this key under `identity`.
    pub fn dns_name(&self, identity: &DomainIdentity) -> String {
        dkim_record_name(&self.selector, identity)
    }
}

/// One version of a DKIM secret.
#[derive(Clone, PartialEq)]
pub struct DkimSecret {
    /// The SES domain identity this secret belongs to.
    pub identity: DomainIdentity,
    /// The key, once the secret has been rotated at least once.
    pub key: Option<PublishedKey>,
    /// The selector the key before this one used.
    pub previous_selector: Option<Selector>,
    /// The SES region of the identity, when not the function's own (DKIM is per region).
    pub region: Option<String>,
    /// Several SES regions that send for the identity with one key and one selector (one TXT
    /// record serves them all); empty unless the secret names `regions`.
    pub regions: Vec<String>,
    /// Fields this crate does not own, kept verbatim.
    pub extra: Map<String, Value>,
}

impl fmt::Debug for DkimSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `extra` may hold an operator's own secrets: show only its field names.
        f.debug_struct("DkimSecret")
            .field("identity", &self.identity)
            .field("key", &self.key)
            .field("previous_selector", &self.previous_selector)
            .field("region", &self.region)
            .field("regions", &self.regions)
            .field("extra_fields", &self.extra.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The most regions one secret may name (SES is offered in fewer than 30).
const MAX_REGIONS: usize = 30;

/// An AWS region name such as `eu-west-1`; the error names `field`, never the value.
fn parse_region(text: &str, field: &str) -> Result<String, String> {
    let ok = text.len() <= 32
        && text.split('-').count() >= 3
        && text.split('-').all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        });
    if ok {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "field `{field}` holds something that is not an AWS region such as eu-west-1"
        ))
    }
}

fn optional_str<'a>(map: &'a Map<String, Value>, field: &str) -> Result<Option<&'a str>, String> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("field `{field}` must be a string")),
    }
}

impl DkimSecret {
    /// Parses a version's `SecretString`. The error names the field at fault and never its value.
    pub fn parse(text: &str) -> Result<Self, String> {
        let value: Value = serde_json::from_str(text).map_err(|_| {
            "the SecretString is not JSON; store an object such as {\"identity\": \"example.com\"}"
                .to_owned()
        })?;
        let Value::Object(map) = value else {
            return Err(
                "the SecretString is JSON but not an object; store {\"identity\": \"example.com\"}"
                    .to_owned(),
            );
        };
        let identity = optional_str(&map, "identity")?.ok_or_else(|| {
            "field `identity` is missing; add the SES domain identity, e.g. \"identity\": \"example.com\""
                .to_owned()
        })?;
        let identity =
            DomainIdentity::parse(identity).map_err(|e| format!("field `identity`: {e}"))?;
        let previous_selector = optional_str(&map, "previous_selector")?
            .map(|s| Selector::parse(s).map_err(|e| format!("field `previous_selector`: {e}")))
            .transpose()?;
        let key = Self::parse_key(&map, &identity)?;
        let region = optional_str(&map, "region")?
            .map(|r| parse_region(r, "region"))
            .transpose()?;
        let regions = Self::parse_regions(&map)?;
        if region.is_some() && !regions.is_empty() {
            return Err(
                "fields `region` and `regions` are both set; keep one (`regions` for an identity sent from several regions)"
                    .into(),
            );
        }
        let extra = map
            .into_iter()
            .filter(|(k, _)| !OWNED_FIELDS.contains(&k.as_str()))
            .collect();
        Ok(Self {
            identity,
            key,
            previous_selector,
            region,
            regions,
            extra,
        })
    }

    /// `regions`: a non-empty list of distinct AWS regions.
    fn parse_regions(map: &Map<String, Value>) -> Result<Vec<String>, String> {
        const HOW: &str =
            "field `regions` must be a list of AWS regions, e.g. [\"eu-west-1\", \"us-east-1\"]";
        let items = match map.get("regions") {
            None | Some(Value::Null) => return Ok(Vec::new()),
            Some(Value::Array(items)) if !items.is_empty() && items.len() <= MAX_REGIONS => items,
            Some(Value::Array(items)) if items.is_empty() => {
                return Err(format!(
                    "{HOW}; it is empty (remove it to use the function's own region)"
                ));
            }
            Some(Value::Array(_)) => {
                return Err(format!("{HOW}, at most {MAX_REGIONS}"));
            }
            Some(_) => return Err(HOW.to_owned()),
        };
        let mut regions: Vec<String> = Vec::with_capacity(items.len());
        for item in items {
            let Value::String(region) = item else {
                return Err(HOW.to_owned());
            };
            let region = parse_region(region, "regions")?;
            if regions.contains(&region) {
                return Err(format!("field `regions` names {region} twice"));
            }
            regions.push(region);
        }
        Ok(regions)
    }

    /// The SES regions the key goes to: each of `regions`, else `region` (`None` = the
    /// function's own). Never empty.
    pub fn ses_regions(&self) -> Vec<Option<&str>> {
        if self.regions.is_empty() {
            vec![self.region.as_deref()]
        } else {
            self.regions.iter().map(|r| Some(r.as_str())).collect()
        }
    }

    fn parse_key(
        map: &Map<String, Value>,
        identity: &DomainIdentity,
    ) -> Result<Option<PublishedKey>, String> {
        let selector = optional_str(map, "selector")?;
        let private_key = optional_str(map, "private_key")?;
        let (selector, private_key) = match (selector, private_key) {
            (None, None) => return Ok(None),
            (Some(s), Some(k)) => (s, k),
            (Some(_), None) => {
                return Err(
                    "field `private_key` is missing while `selector` is set; store both or neither"
                        .into(),
                );
            }
            (None, Some(_)) => {
                return Err(
                    "field `selector` is missing while `private_key` is set; store both or neither"
                        .into(),
                );
            }
        };
        let selector = Selector::parse(selector).map_err(|e| format!("field `selector`: {e}"))?;
        let key = DkimKeyPair::from_private_key(&SecretText::new(private_key))
            // `e` is a `KeyError`: it names what is wrong with the key, never its content.
            .map_err(|e| format!("field `private_key`: {e}"))?;
        if let Some(public_key) = optional_str(map, "public_key")?
            && public_key != key.public_key()
        {
            return Err("field `public_key` does not belong to `private_key`; remove it or store the matching SubjectPublicKeyInfo".into());
        }
        match map.get("key_bits") {
            None | Some(Value::Null) => {}
            Some(Value::Number(n)) if n.as_u64() == Some(u64::from(key.bits().bits())) => {}
            Some(Value::Number(_)) => {
                return Err(format!(
                    "field `key_bits` does not match `private_key`, which is {} bits",
                    key.bits()
                ));
            }
            Some(_) => return Err("field `key_bits` must be a number (1024 or 2048)".into()),
        }
        if let Some(dns_value) = optional_str(map, "dns_value")?
            && dns_value != key.txt_value()
        {
            return Err("field `dns_value` is not the TXT value of `private_key`; it must be `v=DKIM1; k=rsa; p=<public_key>`".into());
        }
        if let Some(dns_name) = optional_str(map, "dns_name")?
            && !dns_name.eq_ignore_ascii_case(&dkim_record_name(&selector, identity))
        {
            return Err(format!(
                "field `dns_name` must be `{}` for this selector and identity",
                dkim_record_name(&selector, identity)
            ));
        }
        let created_at = optional_str(map, "created_at")?.map(str::to_owned);
        Ok(Some(PublishedKey {
            selector,
            key,
            created_at,
        }))
    }

    /// The Route 53 hosted zone an operator pinned in the secret (`hosted_zone_id`), if any.
    pub fn hosted_zone_id(&self) -> Option<&str> {
        self.extra.get("hosted_zone_id").and_then(|v| v.as_str())
    }

    /// The next version: same identity and extra fields, a new key, the old selector remembered.
    pub fn rotated(&self, key: PublishedKey) -> Self {
        Self {
            identity: self.identity.clone(),
            previous_selector: self.key.as_ref().map(|k| k.selector.clone()),
            region: self.region.clone(),
            regions: self.regions.clone(),
            key: Some(key),
            extra: self.extra.clone(),
        }
    }

    /// Serialises to the `SecretString` form. The result holds the private key: store it, never log it.
    pub fn to_secret_string(&self) -> SecretText {
        let mut map = self.extra.clone();
        map.insert("identity".into(), self.identity.as_str().into());
        if let Some(published) = &self.key {
            map.insert("selector".into(), published.selector.as_str().into());
            map.insert(
                "private_key".into(),
                published.key.private_key().expose().into(),
            );
            map.insert("public_key".into(), published.key.public_key().into());
            map.insert("key_bits".into(), published.key.bits().bits().into());
            map.insert("dns_name".into(), published.dns_name(&self.identity).into());
            map.insert("dns_value".into(), published.key.txt_value().into());
            if let Some(created_at) = &published.created_at {
                map.insert("created_at".into(), created_at.as_str().into());
            }
        }
        if let Some(previous) = &self.previous_selector {
            map.insert("previous_selector".into(), previous.as_str().into());
        }
        if let Some(region) = &self.region {
            map.insert("region".into(), region.as_str().into());
        }
        if !self.regions.is_empty() {
            map.insert("regions".into(), self.regions.clone().into());
        }
        SecretText::new(Value::Object(map).to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::key::KeyBits;

    fn rotated_doc() -> (DkimSecret, DkimKeyPair) {
        let seed = DkimSecret::parse(r#"{"identity":"Example.com","owner":"mail-team"}"#).unwrap();
        let key = DkimKeyPair::generate(KeyBits::Rsa1024).unwrap();
        let published = PublishedKey {
            selector: Selector::parse("ses-20261126-abcd").unwrap(),
            key: key.clone(),
            created_at: Some("2026-11-26T00:00:00Z".into()),
        };
        (seed.rotated(published), key)
    }

    #[test]
    fn seed_document_parses() {
        let doc = DkimSecret::parse(r#"{"identity":"example.com"}"#).unwrap();
        assert_eq!(doc.identity.as_str(), "example.com");
        assert!(doc.key.is_none());
    }

    #[test]
    fn round_trip_keeps_unknown_fields_and_all_contract_fields() {
        let (doc, key) = rotated_doc();
        let text = doc.to_secret_string();
        let json: Value = serde_json::from_str(text.expose()).unwrap();
        assert_eq!(json["owner"], "mail-team");
        assert_eq!(json["identity"], "example.com");
        assert_eq!(json["selector"], "ses-20261126-abcd");
        assert_eq!(json["private_key"], key.private_key().expose());
        assert_eq!(json["public_key"], key.public_key());
        assert_eq!(json["key_bits"], 1024);
        assert_eq!(json["dns_name"], "ses-20261126-abcd._domainkey.example.com");
        assert_eq!(json["dns_value"], key.txt_value());
        assert_eq!(json["created_at"], "2026-11-26T00:00:00Z");
        let again = DkimSecret::parse(text.expose()).unwrap();
        assert_eq!(again, doc);
        let next = again.rotated(PublishedKey {
            selector: Selector::parse("ses-20270101-0000").unwrap(),
            key,
            created_at: None,
        });
        assert_eq!(
            next.previous_selector.unwrap().as_str(),
            "ses-20261126-abcd"
        );
    }

    #[test]
    fn corrupt_documents_name_the_problem_without_values() {
        let (doc, key) = rotated_doc();
        let good: Value = serde_json::from_str(doc.to_secret_string().expose()).unwrap();
        let with = |field: &str, value: Value| {
            let mut v = good.clone();
            v[field] = value;
            v.to_string()
        };
        let cases = [
            ("not json".to_owned(), "not JSON"),
            ("[1]".to_owned(), "not an object"),
            ("{}".to_owned(), "`identity` is missing"),
            (r#"{"identity": 5}"#.to_owned(), "must be a string"),
            (r#"{"identity": "x"}"#.to_owned(), "no dot"),
            (with("private_key", "Zm9v".into()), "PKCS#1"),
            (with("public_key", "AAAA".into()), "does not belong"),
            (with("key_bits", 2048.into()), "1024 bits"),
            (with("dns_value", "v=DKIM1; p=".into()), "TXT value"),
            (
                with("dns_name", "x._domainkey.other.com".into()),
                "dns_name",
            ),
            (with("selector", "bad_selector".into()), "field `selector`"),
            (with("private_key", Value::Null), "`private_key` is missing"),
            (with("region", "Mars".into()), "AWS region"),
            (with("regions", serde_json::json!([])), "it is empty"),
            (with("regions", "eu-west-1".into()), "must be a list"),
            (
                with("regions", serde_json::json!(["eu-west-1", 5])),
                "must be a list",
            ),
            (
                with("regions", serde_json::json!(["eu-west-1", "Mars"])),
                "`regions` holds",
            ),
            (
                with("regions", serde_json::json!(["eu-west-1", "eu-west-1"])),
                "twice",
            ),
        ];
        for (text, hint) in cases {
            let err = DkimSecret::parse(&text).unwrap_err();
            assert!(err.contains(hint), "{text}: {err}");
            assert!(!err.contains(key.private_key().expose()));
        }
    }

    #[test]
    fn unknown_fields_round_trip_as_the_readme_says() {
        let text = r#"{"identity":"example.com","owner":"mail-team","tags":["a",{"b":null}],"on":true,"ratio":1e2,"price":0.10,"count":7}"#;
        let again: Value =
            serde_json::from_str(DkimSecret::parse(text).unwrap().to_secret_string().expose())
                .unwrap();
        assert_eq!(again["owner"], "mail-team");
        assert_eq!(again["tags"], serde_json::json!(["a", {"b": null}]));
        assert_eq!(again["on"], true);
        assert_eq!(again["count"].to_string(), "7", "integers keep their text");
        // Documented: numbers are canonicalised, not kept byte for byte.
        assert_eq!(again["ratio"].to_string(), "100.0");
        assert_eq!(again["price"].to_string(), "0.1");
    }

    #[test]
    fn regions_round_trip_and_exclude_region() {
        let doc =
            DkimSecret::parse(r#"{"identity":"example.com","regions":["eu-west-1","us-east-1"]}"#)
                .unwrap();
        assert_eq!(
            doc.ses_regions(),
            vec![Some("eu-west-1"), Some("us-east-1")]
        );
        let again = DkimSecret::parse(doc.to_secret_string().expose()).unwrap();
        assert_eq!(again.regions, doc.regions);
        assert_eq!(
            DkimSecret::parse(r#"{"identity":"example.com"}"#)
                .unwrap()
                .ses_regions(),
            vec![None]
        );
        let err = DkimSecret::parse(
            r#"{"identity":"example.com","region":"eu-west-1","regions":["us-east-1"]}"#,
        )
        .unwrap_err();
        assert!(err.contains("keep one"), "{err}");
    }

    #[test]
    fn debug_hides_key_and_extra_values() {
        let (mut doc, key) = rotated_doc();
        doc.extra.insert("api_token".into(), "hunter2".into());
        let shown = format!("{doc:?}");
        assert!(!shown.contains(key.private_key().expose()));
        assert!(!shown.contains("hunter2"));
        assert!(shown.contains("api_token"));
    }

    /// Found by the `secret_parse` fuzz target: an unknown numeric field must survive a
    /// write/read round trip unchanged (serde_json's `float_roundtrip`).
    #[test]
    fn unknown_numbers_survive_a_round_trip() {
        let doc = DkimSecret::parse(
            r#"{"identity":"example.com","slecOO":77700077777777700000007211644586603810333,"ratio":0.1}"#,
        )
        .unwrap();
        let again = DkimSecret::parse(doc.to_secret_string().expose()).unwrap();
        assert!(again == doc);
    }
}
