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
}
