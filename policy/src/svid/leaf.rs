//! The leaf facts the SPIFFE rules need, read with x509-parser.
//!
//! The certificate is parsed shallowly (extensions left as bytes) and only the extensions a check asks for
//! are decoded, because this runs on every handshake.

use x509_parser::{
    certificate::{X509Certificate, X509CertificateParser},
    extensions::{BasicConstraints, ExtendedKeyUsage, GeneralName, KeyUsage, NameConstraints, SubjectAlternativeName},
    nom::Parser,
    oid_registry::{
        OID_X509_EXT_BASIC_CONSTRAINTS, OID_X509_EXT_EXTENDED_KEY_USAGE, OID_X509_EXT_KEY_USAGE,
        OID_X509_EXT_NAME_CONSTRAINTS, OID_X509_EXT_SUBJECT_ALT_NAME, Oid,
    },
    prelude::FromDer,
};

use super::{Role, SvidError, SvidRule};
use crate::spiffe_id::SpiffeId;

/// A parsed leaf certificate.
pub(super) struct Leaf<'a> {
    pub cert: X509Certificate<'a>,
}

/// A decoded extension and whether it was marked critical.
pub(super) struct Ext<T> {
    pub value: T,
    pub critical: bool,
}

impl<'a> Leaf<'a> {
    pub fn parse(der: &'a [u8]) -> Result<Self, SvidError> {
        let (rest, cert) = X509CertificateParser::new()
            .with_deep_parse_extensions(false)
            .parse(der)
            .map_err(|e| SvidError::Malformed(e.to_string()))?;
        if !rest.is_empty() {
            return Err(SvidError::Malformed(format!("{} bytes after the certificate", rest.len())));
        }
        Ok(Leaf { cert })
    }

    /// Decodes the extension `oid`, refusing duplicates (RFC 5280 forbids them, and a verifier that reads the
    /// first while another library reads the last is how confusion attacks start).
    fn extension<T: FromDer<'a, x509_parser::error::X509Error>>(
        &self,
        oid: &Oid<'_>,
        what: &str,
    ) -> Result<Option<Ext<T>>, SvidError> {
        let malformed = |reason: String| SvidError::Malformed(format!("{what} extension: {reason}"));
        let Some(ext) = self.cert.get_extension_unique(oid).map_err(|e| malformed(e.to_string()))? else {
            return Ok(None);
        };
        let (rest, value) = T::from_der(ext.value).map_err(|e| malformed(e.to_string()))?;
        if !rest.is_empty() {
            return Err(malformed("trailing bytes".into()));
        }
        Ok(Some(Ext { value, critical: ext.critical }))
    }

    pub fn subject_alt_name(&self) -> Result<Option<Ext<SubjectAlternativeName<'a>>>, SvidError> {
        self.extension(&OID_X509_EXT_SUBJECT_ALT_NAME, "subjectAltName")
    }

    pub fn subject_alt_names(&self) -> Result<Vec<GeneralName<'a>>, SvidError> {
        Ok(self.subject_alt_name()?.map(|ext| ext.value.general_names).unwrap_or_default())
    }

    /// The URI SANs, in certificate order.
    pub fn uri_sans(&self) -> Result<Vec<&'a str>, SvidError> {
        let names = self.subject_alt_names()?;
        Ok(names
            .into_iter()
            .filter_map(|name| if let GeneralName::URI(uri) = name { Some(uri) } else { None })
            .collect())
    }

    /// The SPIFFE ID: exactly one URI SAN, a valid SPIFFE ID with a path.
    pub fn spiffe_id(&self) -> Result<SpiffeId, SvidError> {
        spiffe_id_of(&self.uri_sans()?).map_err(SvidError::Rule)
    }

    pub fn basic_constraints(&self) -> Result<Option<Ext<BasicConstraints>>, SvidError> {
        self.extension(&OID_X509_EXT_BASIC_CONSTRAINTS, "basicConstraints")
    }

    pub fn is_ca(&self) -> Result<bool, SvidError> {
        Ok(self.basic_constraints()?.is_some_and(|ext| ext.value.ca))
    }

    pub fn name_constraints(&self) -> Result<Option<Ext<NameConstraints<'a>>>, SvidError> {
        self.extension(&OID_X509_EXT_NAME_CONSTRAINTS, "nameConstraints")
    }

    pub fn key_usage(&self) -> Result<Option<Ext<KeyUsage>>, SvidError> {
        self.extension(&OID_X509_EXT_KEY_USAGE, "keyUsage")
    }

    pub fn extended_key_usage(&self) -> Result<Option<Ext<ExtendedKeyUsage<'a>>>, SvidError> {
        self.extension(&OID_X509_EXT_EXTENDED_KEY_USAGE, "extendedKeyUsage")
    }

    /// The rules webpki does not check (CA flag and key usage), in a fixed order; `all` collects every
    /// violation instead of stopping at the first.
    pub fn rule_violations(&self, all: bool) -> Result<Vec<SvidRule>, SvidError> {
        let mut found = Vec::new();
        if self.is_ca()? {
            found.push(SvidRule::IsCa);
        }
        match self.key_usage()? {
            None => found.push(SvidRule::NoKeyUsage),
            Some(Ext { value: ku, .. }) => {
                if !ku.digital_signature() {
                    found.push(SvidRule::NoDigitalSignature);
                }
                if ku.key_cert_sign() {
                    found.push(SvidRule::KeyCertSign);
                }
                if ku.crl_sign() {
                    found.push(SvidRule::CrlSign);
                }
            }
        }
        if !all {
            found.truncate(1);
        }
        Ok(found)
    }

    /// The roles an extended key usage present on the leaf fails to allow (none when EKU is absent).
    pub fn missing_eku(&self, roles: &[Role]) -> Result<Vec<SvidRule>, SvidError> {
        let Some(Ext { value: eku, .. }) = self.extended_key_usage()? else {
            return Ok(Vec::new());
        };
        let has = |role: &Role| match role {
            Role::Client => eku.client_auth,
            Role::Server => eku.server_auth,
        };
        Ok(roles.iter().filter(|role| !has(role)).map(|&role| SvidRule::MissingEku { role }).collect())
    }
}

/// The SPIFFE ID named by a leaf's URI SANs: exactly one, valid, with a path.
pub(super) fn spiffe_id_of(uris: &[&str]) -> Result<SpiffeId, SvidRule> {
    let uri = match uris {
        [] => return Err(SvidRule::NoUriSan),
        [uri] => *uri,
        _ => return Err(SvidRule::MultipleUriSans { count: uris.len() }),
    };
    let id = SpiffeId::parse(uri).map_err(|reason| SvidRule::InvalidId { uri: uri.to_owned(), reason })?;
    if !id.has_path() {
        return Err(SvidRule::NoPath { id });
    }
    Ok(id)
}
