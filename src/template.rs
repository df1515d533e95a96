//! Extra keys of the workload Secret rendered from the credentials, such as
//! `url: "rediss://{{ .username }}:{{ .password | urlquery }}@cache:6380"`, so that clients that
//! read a connection string get the new password in the same write as the password key.
//!
//! The syntax is the small part of Go templates that such strings need: `{{ .username }}` and
//! `{{ .password }}`, each optionally piped to `urlquery` (percent-encoding for a URL). Anything
//! else is refused when the resource is validated, never at publish time.

use secrecy::{ExposeSecret, SecretString};
use url::form_urlencoded::byte_serialize;

/// One piece of a parsed template.
#[derive(Debug, PartialEq, Eq)]
enum Piece<'a> {
    Text(&'a str),
    Field { name: Field, urlquery: bool },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    Username,
    Password,
}

fn parse(template: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut pieces = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        if start > 0 {
            pieces.push(Piece::Text(&rest[..start]));
        }
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| "a {{ is never closed by }}".to_owned())?;
        let action = after[..end].trim();
        let mut stages = action.split('|').map(str::trim);
        let name = match stages.next() {
            Some(".username") => Field::Username,
            Some(".password") => Field::Password,
            Some(other) => {
                return Err(format!(
                    "{{{{ {other} }}}}: only .username and .password can be used"
                ));
            }
            None => unreachable!("split yields at least one piece"),
        };
        let urlquery = match (stages.next(), stages.next()) {
            (None, _) => false,
            (Some("urlquery"), None) => true,
            _ => {
                return Err(format!(
                    "{{{{ {action} }}}}: the only function is urlquery, as in {{{{ .password | urlquery }}}}"
                ));
            }
        };
        pieces.push(Piece::Field { name, urlquery });
        rest = &after[end + 2..];
    }
    if rest.contains("}}") {
        return Err("a }} closes nothing".into());
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest));
    }
    Ok(pieces)
}

/// Why `template` cannot be rendered, if it cannot. A PEM block is refused: the workload
/// Secret is one a tenant can have written, and it must never carry a certificate a target's
/// `caSecret` could be pointed at.
pub fn check(template: &str) -> Result<(), String> {
    if template.contains("-----BEGIN") {
        return Err("a template renders .username, .password and text, never a PEM block".into());
    }
    parse(template).map(drop)
}

/// `template` with the credentials in it. A template that uses neither is rendered as is.
pub fn render(
    template: &str,
    username: Option<&str>,
    password: &SecretString,
) -> Result<SecretString, String> {
    let mut out = String::new();
    for piece in parse(template)? {
        match piece {
            Piece::Text(text) => out.push_str(text),
            Piece::Field { name, urlquery } => {
                let value = match name {
                    Field::Username => username
                        .ok_or("{{ .username }}: this target publishes no user name".to_owned())?,
                    Field::Password => password.expose_secret(),
                };
                if urlquery {
                    out.extend(byte_serialize(value.as_bytes()));
                } else {
                    out.push_str(value);
                }
            }
        }
    }
    Ok(SecretString::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pw(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    #[test]
    fn renders_user_and_password_with_and_without_urlquery() {
        let url = render(
            "rediss://{{ .username }}:{{ .password | urlquery }}@cache:6380/0",
            Some("orders-app"),
            &pw("a+b/c=d"),
        )
        .unwrap();
        assert_eq!(
            url.expose_secret(),
            "rediss://orders-app:a%2Bb%2Fc%3Dd@cache:6380/0"
        );
        let plain = render("{{.password}}", None, &pw("x y")).unwrap();
        assert_eq!(plain.expose_secret(), "x y");
        assert_eq!(
            render("no fields", None, &pw("p")).unwrap().expose_secret(),
            "no fields"
        );
    }

    #[test]
    fn anything_else_is_refused_with_a_reason() {
        for (template, says) in [
            ("{{ .host }}", "only .username and .password"),
            ("{{ .password | upper }}", "the only function is urlquery"),
            ("{{ .password | urlquery | urlquery }}", "the only function"),
            ("{{ .password ", "never closed"),
            ("oops }}", "closes nothing"),
            (
                "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
                "never a PEM block",
            ),
        ] {
            let error = check(template).unwrap_err();
            assert!(error.contains(says), "{template}: {error}");
        }
        let error = render("{{ .username }}", None, &pw("p")).unwrap_err();
        assert!(error.contains("no user name"), "{error}");
    }

    #[test]
    fn a_rendered_value_shows_no_password_in_debug() {
        let rendered = render("redis://:{{ .password }}@h", None, &pw("Secret-Pw-123")).unwrap();
        assert!(!format!("{rendered:?}").contains("Secret-Pw-123"));
    }
}
