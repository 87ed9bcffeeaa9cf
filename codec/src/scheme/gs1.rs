//! GS1 keys as the GS1 General Specifications (release 24) and the GS1 Digital Link standard
//! (1.4) define them: the primary keys this node binds (GTIN, SSCC, GLN, GRAI, GIAI) with
//! their lengths, character sets and check digits; the key qualifiers each takes, in the
//! order a Digital Link path writes them; and a few data attributes (dates) checked but not
//! part of the key. Read from element strings in the bracketed human-readable form
//! (`(01)09521234543213(10)ABC(21)12345`), from uncompressed Digital Link URIs on any host
//! (`https://example.com/01/09521234543213/10/ABC?17=261231`) and from bare Digital Link paths
//! (`/01/09521234543213/21/7`).
//!
//! The normal form, the alias key, is the Digital Link path of the key and its qualifiers in
//! the standard's order, a GTIN written with 14 digits, values percent-encoded where the path
//! needs it: `/01/09521234543213/10/ABC/21/12345`. Data attributes are checked and dropped:
//! they describe an item, they do not name it.

use super::SchemeError;

/// A primary key: its AI, a name, how its value is checked, and the qualifier AIs it takes,
/// in path order (a later one may follow an earlier one, never the reverse).
struct Key {
    ai: &'static str,
    name: &'static str,
    value: Value,
    qualifiers: &'static [&'static str],
}

#[derive(Clone, Copy)]
enum Value {
    /// Exactly `n` digits, the last a check digit.
    Digits(usize),
    /// 8, 12, 13 or 14 digits with a check digit (a GTIN), written as 14.
    Gtin,
    /// `n` digits with a check digit, then up to `max` CSET 82 characters (a GRAI's serial).
    DigitsThen(usize, usize),
    /// 1 to `n` CSET 82 characters.
    Cset82(usize),
}

const KEYS: &[Key] = &[
    Key {
        ai: "01",
        name: "GTIN",
        value: Value::Gtin,
        qualifiers: &["22", "10", "21"],
    },
    Key {
        ai: "00",
        name: "SSCC",
        value: Value::Digits(18),
        qualifiers: &[],
    },
    Key {
        ai: "414",
        name: "GLN",
        value: Value::Digits(13),
        qualifiers: &["254"],
    },
    Key {
        ai: "8003",
        name: "GRAI",
        value: Value::DigitsThen(14, 16),
        qualifiers: &[],
    },
    Key {
        ai: "8004",
        name: "GIAI",
        value: Value::Cset82(30),
        qualifiers: &[],
    },
];

/// Key qualifiers: AI, name, longest value (CSET 82). AI 235 (TPX) stands in for 21 after a
/// GTIN, as the Digital Link standard allows.
const QUALIFIERS: &[(&str, &str, usize)] = &[
    ("22", "CPV", 20),
    ("10", "batch/lot", 20),
    ("21", "serial", 20),
    ("235", "TPX", 28),
    ("254", "GLN extension", 20),
];

/// Data attributes checked when given (dates, YYMMDD): not part of the key.
const DATES: &[(&str, &str)] = &[
    ("11", "production date"),
    ("13", "packaging date"),
    ("15", "best before date"),
    ("17", "expiration date"),
];

fn bad(what: impl Into<String>) -> SchemeError {
    SchemeError::Gs1(what.into())
}

/// The GS1 check digit of `digits` (all but the check digit): weights 3 and 1 from the right.
pub fn check_digit(digits: &[u8]) -> u8 {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| u32::from(d - b'0') * if i % 2 == 0 { 3 } else { 1 })
        .sum();
    ((10 - sum % 10) % 10) as u8
}

fn checked_digits(name: &str, s: &str) -> Result<(), SchemeError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(format!("{name} {s:?} must be digits only")));
    }
    let (body, last) = s.as_bytes().split_at(s.len() - 1);
    let want = check_digit(body);
    let got = last[0] - b'0';
    if got != want {
        return Err(bad(format!(
            "{name} {s}: the check digit is {got}, it should be {want}"
        )));
    }
    Ok(())
}

/// GS1's 82 characters for alphanumeric values (General Specifications figure 7.11-1).
fn cset82(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!\"%&'()*+,-./:;<=>?_".contains(c)
}

fn checked_cset82(name: &str, s: &str, max: usize) -> Result<(), SchemeError> {
    if s.is_empty() || s.chars().count() > max {
        return Err(bad(format!("{name} {s:?} must be 1 to {max} characters")));
    }
    if let Some(c) = s.chars().find(|c| !cset82(*c)) {
        return Err(bad(format!(
            "{name} {s:?}: {c:?} is not one of GS1's 82 characters"
        )));
    }
    Ok(())
}

/// A key's value checked, in its normal spelling.
fn key_value(k: &Key, v: &str) -> Result<String, SchemeError> {
    match k.value {
        Value::Digits(n) => {
            if v.len() != n {
                return Err(bad(format!("{} {v:?} must be {n} digits", k.name)));
            }
            checked_digits(k.name, v)?;
            Ok(v.to_string())
        }
        Value::Gtin => {
            if ![8, 12, 13, 14].contains(&v.len()) {
                return Err(bad(format!(
                    "GTIN {v:?} must be 8, 12, 13 or 14 digits (it has {})",
                    v.len()
                )));
            }
            checked_digits("GTIN", v)?;
            Ok(format!("{v:0>14}"))
        }
        Value::DigitsThen(n, max) => {
            if v.len() < n || !v.as_bytes()[..n].iter().all(u8::is_ascii_digit) {
                return Err(bad(format!("{} {v:?} must start with {n} digits", k.name)));
            }
            let (digits, serial) = v.split_at(n);
            checked_digits(k.name, digits)?;
            if !serial.is_empty() {
                checked_cset82(&format!("{} serial", k.name), serial, max)?;
            }
            Ok(v.to_string())
        }
        Value::Cset82(max) => {
            checked_cset82(k.name, v, max)?;
            Ok(v.to_string())
        }
    }
}

fn valid_date(name: &str, v: &str) -> Result<(), SchemeError> {
    let ok = v.len() == 6
        && v.bytes().all(|b| b.is_ascii_digit())
        && matches!(
            &v[2..4],
            "01" | "02" | "03" | "04" | "05" | "06" | "07" | "08" | "09" | "10" | "11" | "12"
        )
        && v[4..6].parse::<u8>().is_ok_and(|d| d <= 31);
    if ok {
        Ok(())
    } else {
        Err(bad(format!("{name} {v:?} must be a date YYMMDD")))
    }
}

/// A key with its qualifiers and attributes, as (AI, value) pairs in the order given.
fn normal(pairs: &[(String, String)]) -> Result<String, SchemeError> {
    let Some(((ai, value), rest)) = pairs.split_first() else {
        return Err(bad("no GS1 key"));
    };
    let key = KEYS.iter().find(|k| k.ai == ai).ok_or_else(|| {
        let keys: Vec<String> = KEYS
            .iter()
            .map(|k| format!("{} ({})", k.ai, k.name))
            .collect();
        bad(format!(
            "AI {ai} is not a primary key this node binds (one of {})",
            keys.join(", ")
        ))
    })?;
    let mut out = format!(
        "/{}/{}",
        key.ai,
        super::path_escape(&key_value(key, value)?)
    );
    let mut at = 0;
    for (ai, v) in rest {
        if let Some((_, name)) = DATES.iter().find(|(a, _)| a == ai) {
            valid_date(name, v)?;
            continue;
        }
        // 235 takes the serial's place after a GTIN.
        let slot = if key.ai == "01" && ai == "235" {
            "21"
        } else {
            ai.as_str()
        };
        let Some(pos) = key.qualifiers.iter().position(|q| *q == slot) else {
            return Err(bad(format!(
                "AI {ai} does not qualify a {} (it takes {})",
                key.name,
                if key.qualifiers.is_empty() {
                    "none".to_string()
                } else {
                    key.qualifiers.join(", ")
                }
            )));
        };
        if pos < at {
            return Err(bad(format!(
                "AI {ai} comes before AI {} in a {}'s path",
                key.qualifiers[at - 1],
                key.name
            )));
        }
        at = pos + 1;
        let (_, name, max) = QUALIFIERS
            .iter()
            .find(|(a, _, _)| a == ai)
            .copied()
            .unwrap_or(("", "qualifier", 20));
        checked_cset82(name, v, max)?;
        out.push_str(&format!("/{ai}/{}", super::path_escape(v)));
    }
    Ok(out)
}

fn unescape(v: &str) -> Result<String, SchemeError> {
    percent_encoding::percent_decode_str(v)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| bad(format!("{v:?} is not UTF-8 once percent-decoded")))
}

/// An element string in the bracketed form: `(01)09521234543213(21)12345`.
pub fn element_string(s: &str) -> Result<String, SchemeError> {
    let mut pairs = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let Some(after) = rest.strip_prefix('(') else {
            return Err(bad(format!("{rest:?}: an element string is (AI)value…")));
        };
        let (ai, after) = after
            .split_once(')')
            .ok_or_else(|| bad("an AI's '(' is not closed"))?;
        if !(2..=4).contains(&ai.len()) || !ai.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad(format!("({ai}) is not an AI")));
        }
        let end = after.find('(').unwrap_or(after.len());
        let value = &after[..end];
        if ai == "01" && value.len() != 14 {
            return Err(bad(format!(
                "(01) takes 14 digits, not {} (a GTIN-8, -12 or -13 is written with leading zeros)",
                value.len()
            )));
        }
        pairs.push((ai.to_string(), value.to_string()));
        rest = &after[end..];
        if pairs.len() > 16 {
            return Err(bad("more than 16 element strings"));
        }
    }
    normal(&pairs)
}

/// A Digital Link path (`/01/…/21/…`, any prefix path before the key) and its query.
pub fn digital_link_path(path: &str, query: Option<&str>) -> Result<String, SchemeError> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if segs.len() > 64 {
        return Err(bad("a Digital Link path of more than 64 segments"));
    }
    let start = segs
        .iter()
        .position(|s| KEYS.iter().any(|k| k.ai == *s))
        .ok_or_else(|| {
            bad(format!(
                "{path:?} names no GS1 primary key (/01/…, /00/…, /414/…, /8003/…, /8004/…)"
            ))
        })?;
    let tail = &segs[start..];
    if tail.len() % 2 != 0 {
        return Err(bad(format!(
            "AI {} has no value in the path",
            tail[tail.len() - 1]
        )));
    }
    let mut pairs = Vec::new();
    for p in tail.chunks(2) {
        pairs.push((p[0].to_string(), unescape(p[1])?));
    }
    for (k, v) in form_pairs(query.unwrap_or("")) {
        // Numeric keys are AIs (data attributes); linkType and the rest are not the key's.
        if !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()) {
            pairs.push((k, v));
        }
    }
    normal(&pairs)
}

fn form_pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .take(32)
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let d = |s: &str| {
                percent_encoding::percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (d(k), d(v))
        })
        .collect()
}

/// A Digital Link URI on any host: `https://host[/prefix]/01/…[?…]`.
pub fn digital_link_uri(uri: &str) -> Result<String, SchemeError> {
    let rest = uri
        .strip_prefix("https://")
        .or_else(|| uri.strip_prefix("http://"))
        .ok_or_else(|| bad("a Digital Link URI starts with https:// or http://"))?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if authority.is_empty() {
        return Err(bad("a Digital Link URI names a host"));
    }
    let path = path.split('#').next().unwrap_or("");
    let (path, query) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    };
    digital_link_path(path, query)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_digits_and_the_normal_form() {
        assert_eq!(check_digit(b"0952123454321"), 3);
        assert_eq!(
            element_string("(01)09521234543213(10)ABC(21)12345").unwrap(),
            "/01/09521234543213/10/ABC/21/12345"
        );
        // A GTIN-13 is a GTIN-14 with a leading zero; the expiry date is checked, not kept.
        assert_eq!(
            digital_link_uri(
                "https://id.example.com/shop/01/9521234543213/21/7?17=261231&linkType=gs1:pip"
            )
            .unwrap(),
            "/01/09521234543213/21/7"
        );
        assert_eq!(
            digital_link_path("/01/09521234543213/21/A%2FB", None).unwrap(),
            "/01/09521234543213/21/A%2FB"
        );
        assert_eq!(
            element_string("(414)9521234543213(254)A1").unwrap(),
            "/414/9521234543213/254/A1"
        );
        assert_eq!(
            element_string("(00)095212345678901235").unwrap(),
            "/00/095212345678901235"
        );
    }

    #[test]
    fn bad_keys_say_what_is_wrong() {
        let e = element_string("(01)09521234543214")
            .unwrap_err()
            .to_string();
        assert!(e.contains("the check digit is 4, it should be 3"), "{e}");
        for (input, says) in [
            ("(01)0952123454321", "takes 14 digits"),
            ("(02)09521234543213", "not a primary key"),
            ("(01)09521234543213(21)7(10)L", "comes before"),
            ("(01)09521234543213(254)X", "does not qualify a GTIN"),
            ("(01)09521234543213(17)261332", "YYMMDD"),
            ("(01)09521234543213(21)a b", "82 characters"),
        ] {
            let e = element_string(input).unwrap_err().to_string();
            assert!(e.contains(says), "{input}: {e}");
        }
        assert!(digital_link_uri("https://x.example/01").is_err());
        let e = digital_link_path("/01/95212345432", None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("8, 12, 13 or 14 digits"), "{e}");
        assert!(digital_link_uri("ftp://x/01/09521234543213").is_err());
    }
}
