//! Validators that confirm a regex match: checksums, entropy, ranges.

/// Luhn checksum over the digits of `s` (separators ignored); 13–19 digits.
pub fn luhn(s: &str) -> bool {
    let digits: Vec<u32> = s.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(13..=19).contains(&digits.len()) || digits.iter().all(|d| *d == digits[0]) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                if d * 2 > 9 {
                    d * 2 - 9
                } else {
                    d * 2
                }
            } else {
                d
            }
        })
        .sum();
    sum % 10 == 0
}

/// IBAN: country code, check digits, mod-97 == 1 (spaces ignored).
pub fn iban(s: &str) -> bool {
    let c: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !(15..=34).contains(&c.len())
        || !c[..2].iter().all(u8::is_ascii_uppercase)
        || !c[2..4].iter().all(u8::is_ascii_digit)
    {
        return false;
    }
    let mut rem: u32 = 0;
    for &b in c[4..].iter().chain(&c[..4]) {
        let v = match b {
            b'0'..=b'9' => u32::from(b - b'0'),
            b'A'..=b'Z' => u32::from(b - b'A') + 10,
            _ => return false,
        };
        rem = if v >= 10 { (rem * 100 + v) % 97 } else { (rem * 10 + v) % 97 };
    }
    rem == 1
}

/// US SSN in valid ranges: area not 000, 666 or 9xx; group not 00; serial not 0000.
pub fn ssn(s: &str) -> bool {
    let d: String = s.chars().filter(char::is_ascii_digit).collect();
    if d.len() != 9 {
        return false;
    }
    let (area, group, serial) = (&d[..3], &d[3..5], &d[5..]);
    area != "000" && area != "666" && !area.starts_with('9') && group != "00" && serial != "0000"
}

/// Shannon entropy in bits per character.
pub fn entropy(s: &str) -> f64 {
    let mut counts = [0u32; 256];
    let mut n = 0u32;
    for b in s.bytes() {
        counts[b as usize] += 1;
        n += 1;
    }
    if n == 0 {
        return 0.0;
    }
    let n = f64::from(n);
    counts
        .iter()
        .filter(|c| **c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

/// A generic secret value: at least 3.5 bits/char of entropy, a digit, and not a placeholder.
pub fn generic_secret(s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    const STOP: [&str; 12] = [
        "password",
        "changeme",
        "example",
        "placeholder",
        "your_",
        "xxxx",
        "****",
        "redacted",
        "dummy",
        "sample",
        "<",
        "${",
    ];
    s.len() >= 8
        && s.bytes().any(|b| b.is_ascii_digit())
        && entropy(s) >= 3.5
        && !STOP.iter().any(|w| lower.contains(w))
}

/// At least one digit (cuts English words out of token-shaped patterns).
pub fn has_digit(s: &str) -> bool {
    s.bytes().any(|b| b.is_ascii_digit())
}

/// Whether `s` looks like a real random token rather than a placeholder: at least 8 bytes, no run of
/// 6 or more identical characters, none of the usual placeholder words, and at least 3.0 bits/char
/// of entropy (random base62/hex bodies of 16+ characters sit well above it; `sk-xxxxxxxx…`,
/// `ghp_0000…` and `AKIAEXAMPLEEXAMPLE…` do not).
pub fn token(s: &str) -> bool {
    if s.len() < 8 || entropy(s) < 3.0 {
        return false;
    }
    let b = s.as_bytes();
    let mut run = 1;
    for i in 1..b.len() {
        run = if b[i] == b[i - 1] { run + 1 } else { 1 };
        if run >= 6 {
            return false;
        }
    }
    let lower = s.to_ascii_lowercase();
    const STOP: [&str; 9] =
        ["example", "xxxx", "your", "placeholder", "redacted", "dummy", "sample", "abcdefghij", "1234567890"];
    !STOP.iter().any(|w| lower.contains(w))
}

/// An OpenAI key: a token with digits, upper and lower case letters, and not an Anthropic key
/// (`sk-ant-…`, which has its own rules).
pub fn openai_key(s: &str) -> bool {
    !s.starts_with("sk-ant-")
        && s.bytes().any(|b| b.is_ascii_digit())
        && s.bytes().any(|b| b.is_ascii_uppercase())
        && s.bytes().any(|b| b.is_ascii_lowercase())
        && token(s)
}

/// A JWT: its first segment decodes (base64url, padding optional) to a JSON object with an `alg`
/// string.
pub fn jwt(s: &str) -> bool {
    use base64::Engine;
    let Some(head) = s.split('.').next() else { return false };
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    );
    let Ok(bytes) = engine.decode(head.trim_end_matches('=')) else { return false };
    match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(serde_json::Value::Object(m)) => m.get("alg").is_some_and(serde_json::Value::is_string),
        _ => false,
    }
}

/// A payment card number: Luhn-valid, and a known issuer prefix with a length that issuer uses
/// (Visa, Mastercard, American Express, Discover, JCB, Diners Club, UnionPay, Maestro).
pub fn payment_card(s: &str) -> bool {
    if !luhn(s) {
        return false;
    }
    let d: String = s.chars().filter(char::is_ascii_digit).collect();
    let n = d.len();
    let p = |k: usize| d.get(..k).and_then(|x| x.parse::<u32>().ok()).unwrap_or(0);
    match () {
        _ if d.starts_with('4') => matches!(n, 13 | 16 | 19),
        _ if (51..=55).contains(&p(2)) || (2221..=2720).contains(&p(4)) => n == 16,
        _ if matches!(p(2), 34 | 37) => n == 15,
        _ if p(4) == 6011 || p(2) == 65 || (644..=649).contains(&p(3)) => (16..=19).contains(&n),
        _ if (3528..=3589).contains(&p(4)) => (16..=19).contains(&n),
        _ if matches!(p(2), 36 | 38 | 39) || (300..=305).contains(&p(3)) => (14..=19).contains(&n),
        _ if p(2) == 62 => (16..=19).contains(&n),
        _ if matches!(p(4), 5018 | 5020 | 5038 | 5893 | 6304 | 6759 | 6761 | 6762 | 6763) => (12..=19).contains(&n),
        _ => false,
    }
}

fn digits(s: &str) -> Vec<u8> {
    s.bytes().filter(u8::is_ascii_digit).collect()
}

/// An international (E.164) number: 8 to 15 digits, not all the same.
pub fn phone_e164(s: &str) -> bool {
    let d = digits(s);
    (8..=15).contains(&d.len()) && d.iter().any(|x| *x != d[0])
}

/// A North American number: area code and exchange start with 2–9, and are not N11 service codes.
pub fn phone_nanp(s: &str) -> bool {
    let d = digits(s);
    let d = if d.len() == 11 && d[0] == b'1' { &d[1..] } else { &d[..] };
    d.len() == 10 && d[0] >= b'2' && d[3] >= b'2' && !(d[1] == b'1' && d[2] == b'1') && !(d[4] == b'1' && d[5] == b'1')
}

/// A national number with a trunk prefix (`030 1234567`, `020 7946 0958`, `06 12 34 56 78`): 9 to
/// 12 digits, not all the same after the leading 0.
pub fn phone_national(s: &str) -> bool {
    let d = digits(s);
    let b = s.as_bytes();
    let ssn_shape = b.len() == 11 && b[3] == b'-' && b[6] == b'-';
    (9..=12).contains(&d.len()) && d[1..].iter().any(|x| *x != d[1]) && !ssn_shape
}

/// The value of a `password = …`-style assignment: [`generic_secret`], and not a URL or a path.
pub fn generic_assignment(s: &str) -> bool {
    generic_secret(s) && !s.contains("://") && !s.starts_with('/') && !s.starts_with("./")
}

/// An e-mail address that is not a documentation placeholder (`example.com`, `.test`,
/// `.invalid`, `localhost`), an SSH remote (`git@host`) or an image/file name (`icon@2x.png`).
pub fn email(s: &str) -> bool {
    let Some((local, domain)) = s.rsplit_once('@') else { return false };
    let domain = domain.to_ascii_lowercase();
    let tld = domain.rsplit('.').next().unwrap_or("");
    const FILE_EXT: [&str; 20] = [
        "png", "jpg", "jpeg", "gif", "svg", "webp", "ico", "js", "ts", "css", "py", "rs", "json", "md", "txt", "lock",
        "html", "yaml", "yml", "toml",
    ];
    const DOC_DOMAINS: [&str; 5] = ["example.com", "example.org", "example.net", "domain.com", "email.com"];
    !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local != "git"
        && !FILE_EXT.contains(&tld)
        && !matches!(tld, "test" | "invalid" | "example" | "localhost" | "local")
        && !DOC_DOMAINS.iter().any(|d| domain == *d || domain.ends_with(&format!(".{d}")))
}

/// A password in a URL that is not a placeholder or template (`password`, `pass`, `<password>`,
/// `${DB_PASSWORD}`, `{{ secret }}`, `%s`, `****`, `xxx`).
pub fn uri_password(s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    const STOP: [&str; 12] =
        ["password", "passwd", "changeme", "secret", "xxx", "***", "<", "${", "{{", "%s", "your", "example"];
    !matches!(lower.as_str(), "pass" | "pw" | "pwd" | "user" | "test" | "admin" | "root")
        && !STOP.iter().any(|w| lower.contains(w))
        && s.bytes().any(|b| b != b'*' && b != b'x' && b != b'.')
}

/// An IPv4 address (dotted quad).
pub fn ipv4(s: &str) -> bool {
    s.parse::<std::net::Ipv4Addr>().is_ok()
}

/// An IPv6 address with at least one decimal digit (`fe80::1`, not `ab::cd`, a code path).
pub fn ipv6(s: &str) -> bool {
    s.parse::<std::net::Ipv6Addr>().is_ok() && s.bytes().any(|b| b.is_ascii_digit()) && s.len() >= 3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums() {
        assert!(luhn("4111 1111 1111 1111"));
        assert!(!luhn("4111 1111 1111 1112"));
        assert!(!luhn("0000000000000000"));
        assert!(iban("GB82 WEST 1234 5698 7654 32"));
        assert!(iban("DE89370400440532013000"));
        assert!(!iban("DE89370400440532013001"));
        assert!(ssn("123-45-6789"));
        assert!(!ssn("666-45-6789") && !ssn("900-45-6789") && !ssn("123-00-6789") && !ssn("123-45-0000"));
        assert!(generic_secret("s3cR3t-Xy91-Lq7Z"));
        assert!(!generic_secret("changeme123"));
        assert!(entropy("aaaa") < 0.01);
    }

    #[test]
    fn catalog_validators() {
        assert!(jwt("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxIn0.sig"));
        assert!(!jwt("eyJmb28iOiJiYXIifQ.eyJzdWIiOiIxIn0.sig"));
        assert!(payment_card("4111 1111 1111 1111") && payment_card("378282246310005"));
        assert!(!payment_card("1111 1111 1111 1117"));
        assert!(phone_nanp("(415) 555-2671") && !phone_nanp("123-456-7890"));
        assert!(email("jane.doe@acme-corp.io") && !email("user@example.com") && !email("icon@2x.png"));
        assert!(uri_password("S3cr-9xQ") && !uri_password("password") && !uri_password("${DB_PASS}"));
        assert!(token("Zq8Lm2Xv9Rt4Wy6Pk1Nb") && !token("xxxxxxxxxxxxxxxxxxxx") && !token("YOUR_API_KEY_HERE_1"));
        assert!(ipv6("fe80::1") && !ipv6("ab::cd") && ipv4("10.0.0.1"));
    }
}
