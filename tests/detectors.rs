//! Quality evidence for the built-in detector catalog (`firebreak::inspect::catalog`).
//!
//! A corpus of TRUE POSITIVES — fake credentials of every rule, generated here from seeded random
//! bytes of each format's alphabet and length (never real keys; checksummed formats get valid
//! checksums) and embedded in JSON, logs, prose and code — and TRUE NEGATIVES — look-alikes:
//! wrong checksums, wrong lengths, UUIDs, git SHAs, SHA-256 digests, base64 images, placeholders
//! in code samples, version numbers, dates, timestamps, order numbers.
//!
//! The table of precision and recall per category is printed by `precision_and_recall` (run with
//! `cargo test --test detectors -- --nocapture`). Thresholds asserted: recall 1.0 (every secret of
//! the corpus fully redacted, and named by its own rule), and zero false positives on the negative
//! corpus and around the positives (precision 1.0 on this corpus).

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use firebreak::inspect::catalog;
use firebreak::inspect::{Category, HoldBack, Scanner};

const UPPER: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const LOWER: &str = "abcdefghijklmnopqrstuvwxyz";
const DIGIT: &str = "0123456789";
const HEX: &str = "0123456789abcdef";
const ALNUM: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const B64: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const B64URL: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
const UPNUM: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

struct Gen(StdRng);

impl Gen {
    fn s(&mut self, alphabet: &str, n: usize) -> String {
        let a = alphabet.as_bytes();
        (0..n).map(|_| a[self.0.random_range(0..a.len())] as char).collect()
    }
    /// Random string that ends with an alphanumeric (so a `\b` after it is a real boundary).
    fn s_alnum_end(&mut self, alphabet: &str, n: usize) -> String {
        let mut s = self.s(alphabet, n - 1);
        s.push_str(&self.s(ALNUM, 1));
        s
    }
    fn n(&mut self, lo: u64, hi: u64) -> u64 {
        self.0.random_range(lo..=hi)
    }
    fn pick<'a>(&mut self, v: &[&'a str]) -> &'a str {
        v[self.0.random_range(0..v.len())]
    }
}

/// One text of the corpus and the secrets it holds (with the rule that must name each).
struct Case {
    text: String,
    secrets: Vec<(&'static str, String)>,
}

/// Puts a prefix token in one of several realistic surroundings.
fn embed(i: usize, s: &str) -> String {
    match i % 6 {
        0 => format!("{{\"service\": \"billing\", \"credentials\": {{\"value\": \"{s}\"}}, \"retries\": 3}}"),
        1 => format!("2024-05-02T10:11:12.345Z INFO worker[7]: configured upstream with {s} (region eu-west-1)"),
        2 => format!("Sure! I found this in the repository's CI config: {s}. You should rotate it right away."),
        3 => format!("client = Client(\n    base_url=\"https://api.internal\",\n    credential=\"{s}\",\n)\n"),
        4 => format!("```bash\nexport SERVICE_CREDENTIAL='{s}'\n./deploy.sh --env prod\n```"),
        _ => format!("| name | value |\n|---|---|\n| upstream | `{s}` |\n"),
    }
}

fn luhn_complete(prefix: &str, len: usize, g: &mut Gen) -> String {
    let mut d = prefix.to_owned();
    d.push_str(&g.s(DIGIT, len - prefix.len() - 1));
    let sum: u32 = d
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let v = u32::from(b - b'0');
            if i % 2 == 0 {
                let x = v * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                v
            }
        })
        .sum();
    d.push(char::from(b'0' + ((10 - sum % 10) % 10) as u8));
    d
}

fn iban_complete(country: &str, bban: &str) -> String {
    let s = format!("{bban}{country}00");
    let mut rem = 0u32;
    for c in s.chars() {
        let v = c.to_digit(36).unwrap_or(0);
        rem = if v >= 10 { (rem * 100 + v) % 97 } else { (rem * 10 + v) % 97 };
    }
    format!("{country}{:02}{bban}", 98 - rem)
}

fn spaced4(s: &str) -> String {
    s.as_bytes().chunks(4).map(|c| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>().join(" ")
}

fn b64url_json(v: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
}

fn pem_body(g: &mut Gen, lines: usize) -> String {
    (0..lines).map(|_| g.s(B64, 64)).collect::<Vec<_>>().join("\n")
}

/// The true-positive corpus: several cases of every rule.
fn positives() -> Vec<Case> {
    let mut g = Gen(StdRng::seed_from_u64(0x5eed_f12e));
    let mut out: Vec<Case> = Vec::new();
    let mut one = |id: &'static str, text: String, secret: String| out.push(Case { text, secrets: vec![(id, secret)] });
    // Prefix tokens: generator of the secret, embedded in six surroundings.
    type TokGen = fn(&mut Gen) -> String;
    let toks: Vec<(&'static str, TokGen)> = vec![
        ("aws_access_key_id", |g| format!("{}{}", g.pick(&["AKIA", "ASIA", "AROA"]), g.s(UPNUM, 16))),
        ("gcp_api_key", |g| format!("AIza{}", g.s_alnum_end(B64URL, 35))),
        ("gcp_oauth_client_secret", |g| format!("GOCSPX-{}", g.s_alnum_end(B64URL, 28))),
        ("gcp_oauth_access_token", |g| format!("ya29.{}", g.s_alnum_end(B64URL, 150))),
        ("digitalocean_token", |g| format!("{}_v1_{}", g.pick(&["dop", "doo", "dor"]), g.s(HEX, 64))),
        ("heroku_platform_token", |g| format!("HRKU-AA{}", g.s_alnum_end(B64URL, 58))),
        ("databricks_token", |g| format!("dapi{}", g.s(HEX, 32))),
        ("supabase_token", |g| format!("sbp_{}", g.s(HEX, 40))),
        ("openai_api_key", |g| {
            let body = format!("{}T3BlbkFJ{}", g.s(ALNUM, 20), g.s(ALNUM, 20));
            match g.n(0, 2) {
                0 => format!("sk-{body}"),
                1 => format!("sk-proj-{}T3BlbkFJ{}", g.s(B64URL, 74), g.s_alnum_end(B64URL, 74)),
                _ => format!("sk-svcacct-{}T3BlbkFJ{}", g.s(B64URL, 74), g.s_alnum_end(B64URL, 74)),
            }
        }),
        ("anthropic_api_key", |g| format!("sk-ant-api03-{}AA", g.s(B64URL, 93))),
        ("anthropic_admin_key", |g| format!("sk-ant-admin01-{}AA", g.s(B64URL, 93))),
        ("huggingface_token", |g| format!("hf_{}", g.s(&format!("{UPPER}{LOWER}"), 34))),
        ("groq_api_key", |g| format!("gsk_{}", g.s(ALNUM, 52))),
        ("replicate_api_token", |g| format!("r8_{}", g.s(ALNUM, 37))),
        ("perplexity_api_key", |g| format!("pplx-{}", g.s(ALNUM, 48))),
        ("xai_api_key", |g| format!("xai-{}", g.s(ALNUM, 80))),
        ("github_pat", |g| format!("ghp_{}", g.s(ALNUM, 36))),
        ("github_oauth_token", |g| format!("gho_{}", g.s(ALNUM, 36))),
        ("github_user_to_server_token", |g| format!("ghu_{}", g.s(ALNUM, 36))),
        ("github_app_installation_token", |g| format!("ghs_{}", g.s(ALNUM, 36))),
        ("github_refresh_token", |g| format!("ghr_{}", g.s(ALNUM, 76))),
        ("github_fine_grained_pat", |g| format!("github_pat_{}_{}", g.s(ALNUM, 22), g.s(ALNUM, 59))),
        ("gitlab_pat", |g| format!("glpat-{}", g.s_alnum_end(B64URL, 20))),
        ("gitlab_deploy_token", |g| format!("gldt-{}", g.s_alnum_end(B64URL, 20))),
        ("gitlab_runner_token", |g| format!("{}{}", g.pick(&["glrt-", "GR1348941"]), g.s_alnum_end(B64URL, 20))),
        ("gitlab_trigger_token", |g| format!("glptt-{}", g.s(HEX, 40))),
        ("npm_token", |g| format!("npm_{}", g.s(ALNUM, 36))),
        ("pypi_token", |g| format!("pypi-AgEIcHlwaS5vcmc{}", g.s_alnum_end(B64URL, 150))),
        ("slack_bot_token", |g| {
            format!(
                "xoxb-{}-{}-{}",
                g.n(1_000_000_000, 9_999_999_999),
                g.n(1_000_000_000_000, 9_999_999_999_999),
                g.s(ALNUM, 24)
            )
        }),
        ("slack_user_token", |g| {
            format!(
                "xoxp-{}-{}-{}-{}",
                g.n(1_000_000_000, 9_999_999_999),
                g.n(1_000_000_000, 9_999_999_999),
                g.n(1_000_000_000_000, 9_999_999_999_999),
                g.s(HEX, 32)
            )
        }),
        ("slack_app_token", |g| {
            format!(
                "xapp-1-A{}-{}-{}",
                g.s(&format!("{UPPER}{DIGIT}"), 10),
                g.n(1_000_000_000_000, 9_999_999_999_999),
                g.s(HEX, 64)
            )
        }),
        ("slack_webhook", |g| {
            format!(
                "https://hooks.slack.com/services/T{}/B{}/{}",
                g.s(&format!("{UPPER}{DIGIT}"), 10),
                g.s(&format!("{UPPER}{DIGIT}"), 10),
                g.s(ALNUM, 24)
            )
        }),
        ("discord_webhook", |g| {
            format!(
                "https://discord.com/api/webhooks/{}/{}",
                g.n(100_000_000_000_000_000, 999_999_999_999_999_999),
                g.s_alnum_end(B64URL, 68)
            )
        }),
        ("telegram_bot_token", |g| format!("{}:AA{}", g.n(100_000_000, 9_999_999_999), g.s_alnum_end(B64URL, 33))),
        ("twilio_api_key", |g| format!("SK{}", g.s(HEX, 32))),
        ("sendgrid_api_key", |g| format!("SG.{}.{}", g.s(B64URL, 22), g.s_alnum_end(B64URL, 43))),
        ("mailgun_api_key", |g| format!("key-{}", g.s(HEX, 32))),
        ("mailchimp_api_key", |g| format!("{}-us{}", g.s(HEX, 32), g.n(1, 21))),
        ("stripe_live_key", |g| format!("{}_live_{}", g.pick(&["sk", "rk"]), g.s(ALNUM, 99))),
        ("stripe_test_key", |g| format!("sk_test_{}", g.s(ALNUM, 24))),
        ("stripe_webhook_secret", |g| format!("whsec_{}", g.s(ALNUM, 32))),
        ("shopify_token", |g| format!("{}_{}", g.pick(&["shpat", "shpca", "shppa", "shpss"]), g.s(HEX, 32))),
        ("square_access_token", |g| match g.n(0, 1) {
            0 => format!("sq0atp-{}", g.s_alnum_end(B64URL, 22)),
            _ => format!("EAAA{}", g.s_alnum_end(B64URL, 60)),
        }),
        ("square_oauth_secret", |g| format!("sq0csp-{}", g.s_alnum_end(B64URL, 43))),
        ("newrelic_user_api_key", |g| format!("NRAK-{}", g.s(&format!("{UPPER}{DIGIT}"), 27))),
        ("newrelic_insert_key", |g| format!("NRII-{}", g.s_alnum_end(B64URL, 32))),
        ("newrelic_license_key", |g| format!("{}NRAL", g.s(HEX, 36))),
        ("sentry_auth_token", |g| {
            match g.n(0, 1) {
            0 => format!("sntryu_{}", g.s(HEX, 64)),
            _ => format!(
                "sntrys_{}_{}",
                b64url_json(&format!(
                    "{{\"iat\":{},\"url\":\"https://sentry.io\",\"region_url\":\"https://us.sentry.io\",\"org\":\"acme\"}}",
                    g.n(1_600_000_000, 1_800_000_000)
                )),
                g.s(ALNUM, 43)
            ),
        }
        }),
        ("grafana_service_account_token", |g| format!("glsa_{}_{}", g.s(ALNUM, 32), g.s(HEX, 8))),
        ("grafana_cloud_token", |g| format!("glc_{}", g.s_alnum_end(B64, 120))),
        ("doppler_token", |g| format!("dp.st.{}.{}", g.pick(&["prd", "dev", "stg_eu"]), g.s(ALNUM, 43))),
        ("vault_token", |g| format!("hvs.{}", g.s_alnum_end(B64URL, 91))),
        ("atlassian_api_token", |g| format!("ATATT3xFfGF0{}={}", g.s(B64URL, 170), g.s(&HEX.to_uppercase(), 8))),
        ("linear_api_key", |g| format!("lin_api_{}", g.s(ALNUM, 40))),
        ("postman_api_key", |g| format!("PMAK-{}-{}", g.s(HEX, 24), g.s(HEX, 34))),
        ("age_secret_key", |g| format!("AGE-SECRET-KEY-1{}", g.s("QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L", 58))),
        ("jwt", |g| {
            let alg = g.pick(&["HS256", "RS256", "ES256"]);
            format!(
                "{}.{}.{}",
                b64url_json(&format!("{{\"alg\":\"{alg}\",\"typ\":\"JWT\"}}")),
                b64url_json(&format!(
                    "{{\"sub\":\"{}\",\"iat\":{}}}",
                    g.s(ALNUM, 12),
                    g.n(1_600_000_000, 1_800_000_000)
                )),
                g.s_alnum_end(B64URL, 38)
            )
        }),
    ];
    for (id, f) in &toks {
        for i in 0..6 {
            let s = f(&mut g);
            one(id, embed(i, &s), s);
        }
    }
    // Formats recognised by their assignment context.
    for i in 0..4 {
        let k = g.s(B64, 39) + &g.s(ALNUM, 1);
        let t = match i {
            0 => format!("[default]\naws_access_key_id = AKIA{}\naws_secret_access_key = {k}\n", g.s(UPNUM, 16)),
            1 => format!("{{\"AccessKeyId\": \"ASIA{}\", \"SecretAccessKey\": \"{k}\", \"Expiration\": \"2025-01-01T00:00:00Z\"}}", g.s(UPNUM, 16)),
            2 => format!("env:\n  AWS_SECRET_ACCESS_KEY: \"{k}\"\n  AWS_REGION: eu-west-1\n"),
            _ => format!("Your AWS secret key = {k} (keep it safe)"),
        };
        let mut c = Case { text: t, secrets: vec![("aws_secret_access_key", k)] };
        if i < 2 {
            let id = c.text.split(['=', '"', '\n', ' ']).find(|w| w.starts_with("AKIA") || w.starts_with("ASIA"));
            if let Some(id) = id {
                c.secrets.push(("aws_access_key_id", id.to_owned()));
            }
        }
        out.push(c);
    }
    for i in 0..3 {
        let key = format!(
            "-----BEGIN PRIVATE KEY-----\\n{}\\n-----END PRIVATE KEY-----",
            pem_body(&mut g, 12).replace('\n', "\\n")
        );
        let t = format!(
            "{{\n  \"type\": \"service_account\",\n  \"project_id\": \"acme-prod-{i}\",\n  \"private_key_id\": \"{}\",\n  \"private_key\": \"{key}\\n\",\n  \"token_uri\": \"https://oauth2.googleapis.com/token\"\n}}",
            g.s(HEX, 40)
        );
        out.push(Case { text: t, secrets: vec![("gcp_service_account_key", key)] });
    }
    for i in 0..4 {
        let k = format!("{}==", g.s(B64, 86));
        let t = match i {
            0 => format!(
                "DefaultEndpointsProtocol=https;AccountName=acmeprod;AccountKey={k};EndpointSuffix=core.windows.net"
            ),
            1 => format!("AZURE_STORAGE_KEY=\"{k}\""),
            2 => format!("{{\"accountName\": \"acme\", \"accountKey\": \"{k}\"}}"),
            _ => format!("conn = 'DefaultEndpointsProtocol=https;AccountName=logs;AccountKey={k}'"),
        };
        out.push(Case { text: t, secrets: vec![("azure_storage_account_key", k)] });
    }
    for _ in 0..3 {
        let k = format!("{}=", g.s(B64, 43));
        let t = format!("Endpoint=sb://acme.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey={k}");
        out.push(Case { text: t, secrets: vec![("azure_shared_access_key", k)] });
    }
    for _ in 0..3 {
        let raw = g.s(B64, 43);
        let k = format!("{}%3D", raw.replace('+', "%2B").replace('/', "%2F"));
        let t = format!("https://acme.blob.core.windows.net/exports/report.csv?sv=2022-11-02&ss=b&srt=o&sp=r&se=2025-06-30T18:00:00Z&spr=https&sig={k}");
        out.push(Case { text: t, secrets: vec![("azure_sas_token", k)] });
    }
    for i in 0..3 {
        let k = format!(
            "{}{}Q~{}",
            g.s(ALNUM, 3),
            g.n(0, 9),
            g.s_alnum_end("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_~.-", 34)
        );
        let t = match i {
            0 => format!("AZURE_CLIENT_SECRET={k}"),
            1 => format!("{{\"clientId\": \"{}\", \"clientSecret\": \"{k}\"}}", uuid(&mut g)),
            _ => format!("The app registration's client secret is {k} and expires in 2026."),
        };
        out.push(Case { text: t, secrets: vec![("azure_ad_client_secret", k)] });
    }
    for i in 0..3 {
        let k = uuid(&mut g);
        let t = match i {
            0 => format!("HEROKU_API_KEY={k}"),
            1 => format!("heroku_api_key: \"{k}\""),
            _ => format!("{{\"heroku_token\": \"{k}\"}}"),
        };
        out.push(Case { text: t, secrets: vec![("heroku_api_key", k)] });
    }
    for i in 0..3 {
        let k = if i == 2 { g.s(HEX, 37) } else { g.s_alnum_end(B64URL, 40) };
        let t = match i {
            0 => format!("CLOUDFLARE_API_TOKEN={k}"),
            1 => format!("cf_api_token: '{k}'"),
            _ => format!("cloudflare_global_api_key = \"{k}\""),
        };
        out.push(Case { text: t, secrets: vec![("cloudflare_api_token", k)] });
    }
    for i in 0..3 {
        let k = if i == 1 { g.s(HEX, 40) } else { g.s(HEX, 32) };
        let t = match i {
            0 => format!("DD_API_KEY={k}"),
            1 => format!("{{\"datadog_app_key\": \"{k}\"}}"),
            _ => format!("  -H \"DD-API-KEY: {k}\" \\"),
        };
        out.push(Case { text: t, secrets: vec![("datadog_api_key", k)] });
    }
    for i in 0..3 {
        let k = g.s(HEX, 32);
        let t = match i {
            0 => format!("TWILIO_AUTH_TOKEN={k}"),
            1 => format!("{{\"account_sid\": \"AC{}\", \"auth_token\": \"{k}\"}}", g.s(HEX, 32)),
            _ => format!("client = Client(account_sid, auth_token='{k}')"),
        };
        out.push(Case { text: t, secrets: vec![("twilio_auth_token", k)] });
    }
    for i in 0..3 {
        let k = format!("00{}", g.s_alnum_end(B64URL, 40));
        let t = match i {
            0 => format!("Authorization: SSWS {k}"),
            1 => format!("OKTA_API_TOKEN={k}"),
            _ => format!("{{\"okta_token\": \"{k}\"}}"),
        };
        out.push(Case { text: t, secrets: vec![("okta_api_token", k)] });
    }
    for i in 0..3 {
        let k =
            format!("{}{}.{}.{}", g.pick(&["M", "N", "O"]), g.s(B64URL, 25), g.s(B64URL, 6), g.s_alnum_end(B64URL, 38));
        let t = match i {
            0 => format!("DISCORD_BOT_TOKEN={k}"),
            1 => format!("headers = {{\"Authorization\": \"Bot {k}\"}}"),
            _ => format!("discord:\n  token: \"{k}\"\n"),
        };
        out.push(Case { text: t, secrets: vec![("discord_bot_token", k)] });
    }
    for i in 0..3 {
        let body = pem_body(&mut g, 10);
        let (kind, id) = match i {
            0 => ("RSA PRIVATE KEY", "private_key_pem"),
            1 => ("EC PRIVATE KEY", "private_key_pem"),
            _ => ("PRIVATE KEY", "private_key_pem"),
        };
        let k = format!("-----BEGIN {kind}-----\n{body}\n-----END {kind}-----");
        out.push(Case {
            text: format!("Here is the key file you asked about:\n\n{k}\n\nStore it in the vault."),
            secrets: vec![(id, k)],
        });
    }
    for _ in 0..3 {
        let k = format!(
            "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA{}\n{}\n-----END OPENSSH PRIVATE KEY-----",
            g.s(B64, 40),
            pem_body(&mut g, 5)
        );
        out.push(Case { text: format!("$ cat ~/.ssh/id_ed25519\n{k}\n$ "), secrets: vec![("openssh_private_key", k)] });
    }
    for _ in 0..2 {
        let k = format!(
            "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlQOYBF{}\n{}\n={}\n-----END PGP PRIVATE KEY BLOCK-----",
            g.s(B64, 58),
            pem_body(&mut g, 6),
            g.s(B64, 4)
        );
        out.push(Case {
            text: format!("gpg --export-secret-keys output:\n{k}\n"),
            secrets: vec![("pgp_private_key", k)],
        });
    }
    // Connection strings and basic-auth URLs: the password is the secret.
    let pw = |g: &mut Gen| format!("{}{}{}", g.s(ALNUM, 10), g.pick(&["!", "-", "_", "~", "%21", "."]), g.s(ALNUM, 7));
    let uris: [(&'static str, &[&str]); 6] = [
        (
            "postgres_uri_password",
            &[
                "postgres://app_user:{pw}@db.internal:5432/app",
                "postgresql+psycopg2://svc:{pw}@orders-db.internal/orders?sslmode=require",
            ],
        ),
        (
            "mysql_uri_password",
            &["mysql://root:{pw}@mysql.prod.svc:3306/shop", "mariadb://reporting:{pw}@db-2/analytics"],
        ),
        (
            "mongodb_uri_password",
            &[
                "mongodb+srv://admin:{pw}@cluster0.ab1cd.mongodb.net/test?retryWrites=true",
                "mongodb://app:{pw}@mongo-0,mongo-1/app",
            ],
        ),
        ("redis_uri_password", &["redis://:{pw}@cache.internal:6379/0", "rediss://default:{pw}@redis.acme.io:6380"]),
        ("amqp_uri_password", &["amqp://guest2:{pw}@rabbitmq:5672/vhost", "amqps://events:{pw}@mq.acme.io/prod"]),
        (
            "basic_auth_url",
            &["https://deploy:{pw}@git.acme.io/platform/infra.git", "http://admin:{pw}@tomcat.internal:8080/manager"],
        ),
    ];
    for (id, forms) in uris {
        for (i, f) in forms.iter().enumerate() {
            let p = pw(&mut g);
            let u = f.replace("{pw}", &p);
            let t = match i {
                0 => format!("DATABASE_URL={u}"),
                _ => format!("The service connects with `{u}` at start-up."),
            };
            out.push(Case { text: t, secrets: vec![(id, p)] });
        }
    }
    let sentry = |g: &mut Gen| g.s(HEX, 32).to_string();
    for i in 0..3 {
        let k = sentry(&mut g);
        let t = format!(
            "SENTRY_DSN=https://{k}@o{}.ingest.{}sentry.io/{}",
            g.n(100_000, 9_999_999),
            if i == 1 { "us." } else { "" },
            g.n(1000, 9_999_999)
        );
        out.push(Case { text: t, secrets: vec![("sentry_dsn", k)] });
    }
    // Generic secrets next to a keyword.
    let generic_forms = [
        "DB_PASSWORD={s}",
        "password: \"{s}\"",
        "client_secret={s}",
        "{\"api_key\": \"{s}\"}",
        "SECRET_TOKEN = '{s}'",
        "passwd {s}",
    ];
    for (i, f) in generic_forms.iter().enumerate() {
        let s = format!(
            "{}{}{}",
            g.s(ALNUM, 8),
            g.n(10, 99),
            g.s("ABCDEFGHJKMNPQRSTUVWXYZabcdefghjkmnpqrstuvwxyz!#%*+-._~", 8)
        );
        let f = if i == 5 { "passwd: {s}" } else { f };
        out.push(Case { text: format!("config:\n  {}\n", f.replace("{s}", &s)), secrets: vec![("generic_secret", s)] });
    }
    // PII.
    let first = ["jane", "omar", "li.wei", "m.rossi", "kowalski", "ana-maria", "j_smith"];
    let domains =
        ["acme-corp.io", "mail.contoso.de", "fastmail.fm", "uni-heidelberg.de", "gmail.com", "sub.dept.gov.uk"];
    for i in 0..6 {
        let e = format!("{}{}@{}", first[i % first.len()], g.n(1, 99), domains[i % domains.len()]);
        let t = match i % 3 {
            0 => format!("Please reach out to {e} for the invoice."),
            1 => format!("{{\"user\": {{\"email\": \"{e}\", \"id\": 42}}}}"),
            _ => format!("From: Support <{e}>\nSubject: Re: order"),
        };
        out.push(Case { text: t, secrets: vec![("email", e)] });
    }
    for i in 0..6 {
        let (p, id) = match i {
            0 => (format!("+1 {} {} {}", g.n(201, 989), g.n(200, 999), g.n(1000, 9999)), "phone_e164"),
            1 => (format!("+44 20 {} {}", g.n(7000, 8999), g.n(1000, 9999)), "phone_e164"),
            2 => (format!("+49{}{}", g.n(30, 89), g.n(1_000_000, 99_999_999)), "phone_e164"),
            3 => (format!("+33 6 {} {} {} {}", g.n(10, 99), g.n(10, 99), g.n(10, 99), g.n(10, 99)), "phone_e164"),
            4 => (format!("+1 ({}) {}-{}", g.n(201, 989), g.n(200, 999), g.n(1000, 9999)), "phone_e164"),
            _ => (format!("+81-3-{}-{}", g.n(1000, 9999), g.n(1000, 9999)), "phone_e164"),
        };
        out.push(Case { text: format!("Call me at {p} tomorrow."), secrets: vec![(id, p)] });
    }
    for i in 0..4 {
        let (a, b, c) = (g.n(201, 989), g.n(200, 999), g.n(1000, 9999));
        let p = match i {
            0 => format!("({a}) {b}-{c}"),
            1 => format!("{a}-{b}-{c}"),
            2 => format!("{a}.{b}.{c}"),
            _ => format!("({a}){b}-{c}"),
        };
        let t = if i % 2 == 0 { format!("Phone: {p}") } else { format!("{{\"phone\": \"{p}\"}}") };
        out.push(Case { text: t, secrets: vec![("phone_us", p)] });
    }
    for i in 0..4 {
        let p = match i {
            0 => format!("030 {}", g.n(1_000_000, 9_999_999)),
            1 => format!("020 {} {}", g.n(7000, 8999), g.n(1000, 9999)),
            2 => format!("06 {} {} {} {}", g.n(10, 99), g.n(10, 99), g.n(10, 99), g.n(10, 99)),
            _ => format!("089/{}", g.n(10_000_000, 99_999_999)),
        };
        out.push(Case { text: format!("Tel. {p} (Mo–Fr)"), secrets: vec![("phone_national", p)] });
    }
    for i in 0..8 {
        let n = match i % 4 {
            0 => luhn_complete("4", 16, &mut g),
            1 => luhn_complete(g.pick(&["51", "52", "55", "2221"]), 16, &mut g),
            2 => luhn_complete(g.pick(&["34", "37"]), 15, &mut g),
            _ => luhn_complete("6011", 16, &mut g),
        };
        let n = if i % 2 == 0 && n.len() == 16 { spaced4(&n) } else { n };
        let t = match i % 3 {
            0 => format!("Card number: {n}, exp 04/27"),
            1 => format!("{{\"card\": \"{n}\", \"cvc\": \"***\"}}"),
            _ => format!("charged {n} for 49.00 EUR"),
        };
        out.push(Case { text: t, secrets: vec![("payment_card", n)] });
    }
    for i in 0..6 {
        let iban = match i % 3 {
            0 => iban_complete("DE", &g.s(DIGIT, 18)),
            1 => iban_complete("GB", &format!("{}{}", g.s(UPPER, 4), g.s(DIGIT, 14))),
            _ => iban_complete("FR", &g.s(DIGIT, 23)),
        };
        let iban = if i >= 3 { spaced4(&iban) } else { iban };
        let t = if i % 2 == 0 {
            format!("IBAN: {iban}\nBIC: COBADEFFXXX")
        } else {
            format!("Please transfer to {iban} by Friday.")
        };
        out.push(Case { text: t, secrets: vec![("iban", iban)] });
    }
    for i in 0..4 {
        let area = loop {
            let a = g.n(1, 899);
            if a != 666 {
                break a;
            }
        };
        let s = format!("{area:03}-{:02}-{:04}", g.n(1, 99), g.n(1, 9999));
        let t = if i % 2 == 0 { format!("Applicant {s} approved") } else { format!("{{\"tax_id\": \"{s}\"}}") };
        out.push(Case { text: t, secrets: vec![("us_ssn", s)] });
    }
    for i in 0..3 {
        let s = format!("{:03}{:02}{:04}", g.n(1, 665), g.n(1, 99), g.n(1, 9999));
        let t = match i {
            0 => format!("SSN: {s}"),
            1 => format!("social security number is {s}"),
            _ => format!("ssn={s}"),
        };
        out.push(Case { text: t, secrets: vec![("us_ssn_keyword", s)] });
    }
    for i in 0..3 {
        let ip = format!("{}.{}.{}.{}", g.n(1, 223), g.n(0, 255), g.n(0, 255), g.n(1, 254));
        let t = match i {
            0 => format!("connect to {ip} on port 22"),
            1 => format!("{{\"client_ip\": \"{ip}\"}}"),
            _ => format!("Failed password from {ip}."),
        };
        out.push(Case { text: t, secrets: vec![("ipv4_address", ip)] });
    }
    for (i, ip) in
        ["2001:db8:85a3::8a2e:370:7334", "fe80::1ff:fe23:4567:890a", "2001:0db8:0000:0000:0000:ff00:0042:8329"]
            .iter()
            .enumerate()
    {
        let t = if i == 0 { format!("listening on [{ip}]:443") } else { format!("peer {ip} connected") };
        out.push(Case { text: t, secrets: vec![("ipv6_address", (*ip).to_owned())] });
    }
    out
}

fn uuid(g: &mut Gen) -> String {
    format!(
        "{}-{}-4{}-{}{}-{}",
        g.s(HEX, 8),
        g.s(HEX, 4),
        g.s(HEX, 3),
        g.pick(&["8", "9", "a", "b"]),
        g.s(HEX, 3),
        g.s(HEX, 12)
    )
}

/// The true-negative corpus (scanned with the default-on rules).
fn negatives() -> Vec<String> {
    let mut g = Gen(StdRng::seed_from_u64(0x0bad_5eed));
    let mut v: Vec<String> = Vec::new();
    for _ in 0..40 {
        v.push(format!("request_id={} trace={} span={}", uuid(&mut g), g.s(HEX, 32), g.s(HEX, 16)));
        v.push(format!(
            "commit {}\nAuthor: dev\n\n    fix: handle retries\nMerge: {} {}",
            g.s(HEX, 40),
            g.s(HEX, 7),
            g.s(HEX, 7)
        ));
        v.push(format!("image: ghcr.io/acme/api@sha256:{}\nsha256sum: {}  dist.tar.gz", g.s(HEX, 64), g.s(HEX, 64)));
    }
    for _ in 0..15 {
        let mut img = String::from("iVBORw0KGgoAAAANSUhEUgAA");
        img.push_str(&g.s(B64, 1200));
        v.push(format!("![chart](data:image/png;base64,{img}==)"));
        v.push(format!("{{\"type\": \"image\", \"source\": {{\"type\": \"base64\", \"media_type\": \"image/jpeg\", \"data\": \"/9j/4AAQSkZJRg{}\"}}}}", g.s(B64, 800)));
    }
    // Wrong checksums.
    for _ in 0..20 {
        let good = luhn_complete("4", 16, &mut g);
        let last = good.as_bytes()[15] - b'0';
        let bad = format!("{}{}", &good[..15], (last + 1 + g.n(0, 7) as u8) % 10);
        v.push(format!("Card number: {}", spaced4(&bad)));
        let iban = iban_complete("DE", &g.s(DIGIT, 18));
        let check: u32 = iban[2..4].parse().unwrap_or(0);
        let wrong = format!("DE{:02}{}", (check + 1 + g.n(0, 50) as u32) % 97 + 2, &iban[4..]);
        if !firebreak::inspect::validate::iban(&wrong) {
            v.push(format!("IBAN: {wrong}"));
        }
        v.push(format!("Applicant {}-{:02}-{:04}", g.pick(&["000", "666", "900", "987"]), g.n(1, 99), g.n(1, 9999)));
        v.push(format!(
            "Applicant {:03}-00-{:04} and {:03}-{:02}-0000",
            g.n(1, 665),
            g.n(1, 9999),
            g.n(1, 665),
            g.n(1, 99)
        ));
        // A JWT-shaped string whose header is not JSON.
        v.push(format!("eyJ{}.eyJ{}.{}", g.s(ALNUM, 30), g.s(ALNUM, 40), g.s(ALNUM, 43)));
    }
    // Wrong lengths.
    for _ in 0..5 {
        v.push(format!("id: AKIA{}", g.s(UPNUM, 15)));
        v.push(format!("AIza{} is too short", g.s(ALNUM, 30)));
        v.push(format!("ghp_{} (truncated)", g.s(ALNUM, 30)));
        v.push(format!("npm_{}", g.s(ALNUM, 30)));
        v.push(format!("hf_{}", g.s(ALNUM, 12)));
        v.push(format!("sid SK{}", g.s(HEX, 31)));
        v.push(format!("dop_v1_{}", g.s(HEX, 60)));
        v.push(format!("xoxb-{}-{}", g.n(1000, 9999), g.s(ALNUM, 10)));
        v.push(format!("github_pat_{}", g.s(ALNUM, 40)));
        v.push(format!("key-{} mapping", g.s(HEX, 20)));
        v.push(format!("dapi{}", g.s(HEX, 20)));
        v.push(format!("glpat-{}", g.s(ALNUM, 12)));
        v.push(format!("ghp_{}", g.s(ALNUM, 40)));
    }
    // Placeholders and code samples.
    let fixed = [
        "export OPENAI_API_KEY=sk-...",
        "Set `OPENAI_API_KEY=sk-your-key-here` in your shell.",
        "client = OpenAI(api_key=\"YOUR_API_KEY\")",
        "api_key = os.environ[\"ANTHROPIC_API_KEY\"]",
        "headers = {\"Authorization\": f\"Bearer {token}\"}",
        "token = tokenizer.encode(text)",
        "let api_key = std::env::var(\"API_KEY\")?;",
        "password: ${DB_PASSWORD}",
        "password = get_password_from_vault(name)",
        "secret: {{ .Values.secret }}",
        "\"api_key\": \"<your-api-key>\"",
        "AWS_ACCESS_KEY_ID=AKIAXXXXXXXXXXXXXXXX",
        "aws_secret_access_key = YOUR_SECRET_ACCESS_KEY_HERE_xxxxxxxxxxxxxx",
        "GITHUB_TOKEN=ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        "SLACK_TOKEN=xoxb-your-bot-token",
        "DATABASE_URL=postgres://user:password@localhost:5432/mydb",
        "DATABASE_URL=postgres://postgres:${POSTGRES_PASSWORD}@db:5432/app",
        "redis://localhost:6379/0",
        "mongodb://mongo:27017/app",
        "curl https://user:pass@example.com/api",
        "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----",
        "-----BEGIN CERTIFICATE-----\nMIIDdzCCAl+gAwIBAgIEAgAAuTANBgkqhkiG9w0BAQUFADBa\n-----END CERTIFICATE-----",
        "Contact us at user@example.com or support@example.org.",
        "git clone git@github.com:acme/infra.git",
        "<img src=\"logo@2x.png\" srcset=\"logo@3x.png 3x\">",
        "npm install @types/node@18.11.9 lodash@4.17.21",
        "@app.route('/health')\ndef health():\n    return 'ok'",
        "The max_tokens parameter defaults to 4096; temperature=0.7.",
        "token_count: 1234, prompt_tokens: 987, completion_tokens: 247",
        "Use a key-value store like Redis; scikit-learn (sk-learn) is fine for risk-scoring and task-runner jobs.",
        "This is a secret: nobody knows. The password is long. The token expired.",
        "Python 3.11.4, rustc 1.85.0, node v20.11.1, version 2.0.0-rc.1, build 1.2.3.4567",
        "Released on 2024-05-02, updated 02/05/2024 and 31.12.2024 at 10:11:12.",
        "timestamps: 1714644672, 1714644672123, 2024-05-02T10:11:12.345+02:00",
        "Order #100234567 shipped; ORD-2024-000123-77; invoice INV-0042-7781-3321; ticket 12345678.",
        "Tracking number 1Z999AA10123456784, reference 4003-2024-117.",
        "The population was 8,336,817 in 2019 and the budget $1,299,000.00.",
        "ISBN 978-3-16-148410-0 and ISSN 0317-8471.",
        "at firebreak::inspect::scanner::scan (src/inspect/scanner.rs:123:45)",
        "color: #1a2b3c; background: #ffcc00; z-index: 10000;",
        "UUID 550e8400-e29b-41d4-a716-446655440000 and nil 00000000-0000-0000-0000-000000000000",
        "sig=abc123 in a query string, signature=xyz",
        "Bearer eyJhbGciOiJIUzI1NiJ9 (header only, truncated)",
        "See https://docs.acme.io/guide?ref=nav#setup and http://localhost:8080/health",
        "std::vector<int> v; a::b::c(); fe::ad; Vec::<u8>::new()",
        "Coordinates 52.5200, 13.4050; ratio 0.000123456789",
        "Serial numbers: 0001-2345-6789, 2345 6789 0123",
        "The sk_test_ prefix means test mode; sk_live_ keys are secret.",
        "Example Twilio SID: ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
        "Set PYPI_TOKEN to pypi-AgEIcHlwaS5vcmc... in your CI secrets.",
    ];
    v.extend(fixed.iter().map(|s| (*s).to_owned()));
    // Realistic prose and code with numbers and keywords but no secrets.
    for i in 0..30 {
        v.push(format!(
            "Step {i}: the auth token is refreshed every {} seconds. Password rules: at least {} characters. \
             The API key is read from the environment, never from the config file. Build {}.{}.{} took {} ms.",
            g.n(60, 3600),
            g.n(8, 16),
            g.n(0, 9),
            g.n(0, 30),
            g.n(0, 200),
            g.n(100, 99999)
        ));
    }
    v
}

/// Negatives for the off-by-default IP rules, scanned with every rule on.
fn ip_negatives() -> Vec<&'static str> {
    vec![
        "version 1.2.3 and 10.5",
        "pi is 3.14159, e is 2.71828",
        "999.1.1.1 is not an address",
        "std::vector<int> and a::b",
        "dates 2024.05.02",
        "ratio 1.2.3.4.5.6",
        "fn main() { Vec::<u8>::new(); }",
    ]
}

fn rules_by_default(on_only: bool) -> Scanner {
    let rules = catalog::builtin()
        .expect("catalog builds")
        .into_iter()
        .filter(|(_, on)| *on || !on_only)
        .map(|(r, _)| r)
        .collect();
    Scanner::new(rules, "[REDACTED:<rule-id>]").expect("scanner builds")
}

#[derive(Default, Clone, Copy)]
struct Tally {
    tp: usize,
    fn_: usize,
    misnamed: usize,
    fp: usize,
}

fn category_of(id: &str, all: &Scanner) -> Category {
    all.rules().iter().find(|r| r.id == id).map(|r| r.category).unwrap_or(Category::Custom)
}

#[test]
fn precision_and_recall() {
    let all = rules_by_default(false);
    let default = rules_by_default(true);
    let mut tally: BTreeMap<&'static str, Tally> = BTreeMap::new();
    let mut problems: Vec<String> = Vec::new();
    let cases = positives();
    for c in &cases {
        let findings = all.scan(&c.text);
        let (redacted, _) = all.redact(&c.text);
        let mut spans = Vec::new();
        for (id, secret) in &c.secrets {
            let cat = category_of(id, &all).as_str();
            let Some(pos) = c.text.find(secret.as_str()) else {
                problems.push(format!("corpus bug: `{secret}` not in text"));
                continue;
            };
            let end = pos + secret.len();
            spans.push((pos, end));
            let covered = findings.iter().any(|f| f.start <= pos && f.end >= end);
            let t = tally.entry(cat).or_default();
            if covered && !redacted.contains(secret.as_str()) {
                t.tp += 1;
                let named =
                    findings.iter().find(|f| f.start <= pos && f.end >= end).map(|f| all.rule(f.rule).id.as_str());
                if named != Some(*id) {
                    t.misnamed += 1;
                    problems.push(format!("{id}: named {named:?} in {:?}", c.text));
                }
            } else {
                t.fn_ += 1;
                problems.push(format!("MISSED {id}: {:?} -> {:?}", c.text, redacted));
            }
        }
        for f in &findings {
            if !spans.iter().any(|(s, e)| f.start < *e && f.end > *s) {
                let r = all.rule(f.rule);
                tally.entry(r.category.as_str()).or_default().fp += 1;
                problems.push(format!("STRAY {} on {:?} in {:?}", r.id, &c.text[f.start..f.end], c.text));
            }
        }
    }
    let negs = negatives();
    for n in &negs {
        for f in default.scan(n) {
            let r = default.rule(f.rule);
            tally.entry(r.category.as_str()).or_default().fp += 1;
            problems.push(format!("FALSE POSITIVE {} on {:?} in {:?}", r.id, &n[f.start..f.end], n));
        }
    }
    for n in ip_negatives() {
        for f in all.scan(n) {
            let r = all.rule(f.rule);
            tally.entry(r.category.as_str()).or_default().fp += 1;
            problems.push(format!("FALSE POSITIVE (all rules on) {} on {:?} in {:?}", r.id, &n[f.start..f.end], n));
        }
    }
    let secrets: usize = cases.iter().map(|c| c.secrets.len()).sum();
    println!();
    println!(
        "detector corpus: {} positive texts holding {secrets} secrets, {} negative texts ({} bytes)",
        cases.len(),
        negs.len() + ip_negatives().len(),
        negs.iter().map(String::len).sum::<usize>()
    );
    println!(
        "{:<12} {:>6} {:>6} {:>8} {:>6} {:>10} {:>8}",
        "category", "TP", "FN", "misnamed", "FP", "precision", "recall"
    );
    let mut total = Tally::default();
    let row = |name: &str, t: &Tally| {
        let p = if t.tp + t.fp == 0 { 1.0 } else { t.tp as f64 / (t.tp + t.fp) as f64 };
        let r = if t.tp + t.fn_ == 0 { 1.0 } else { t.tp as f64 / (t.tp + t.fn_) as f64 };
        println!("{name:<12} {:>6} {:>6} {:>8} {:>6} {p:>10.4} {r:>8.4}", t.tp, t.fn_, t.misnamed, t.fp);
        (p, r)
    };
    for (cat, t) in &tally {
        row(cat, t);
        total.tp += t.tp;
        total.fn_ += t.fn_;
        total.fp += t.fp;
        total.misnamed += t.misnamed;
    }
    let (p, r) = row("overall", &total);
    for pr in &problems {
        println!("  {pr}");
    }
    assert!(r >= 1.0, "recall {r} < 1.0");
    assert!(p >= 1.0, "precision {p} < 1.0 ({} false positives)", total.fp);
    assert_eq!(total.misnamed, 0, "secrets named by another rule");
}

#[test]
fn rule_ids_are_unique_and_every_rule_has_a_true_positive() {
    let ids: Vec<&str> = catalog::ids().collect();
    let unique: BTreeSet<&str> = ids.iter().copied().collect();
    assert_eq!(ids.len(), unique.len(), "duplicate rule ids");
    assert!(ids.iter().all(|id| id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')));
    let covered: BTreeSet<&str> = positives().iter().flat_map(|c| c.secrets.iter().map(|(id, _)| *id)).collect();
    let missing: Vec<&&str> = unique.iter().filter(|id| !covered.contains(**id)).collect();
    assert!(missing.is_empty(), "rules without a true positive: {missing:?}");
    let built = catalog::builtin().expect("catalog builds");
    let creds = built.iter().filter(|(r, _)| r.category == Category::Credential).count();
    let pii = built.iter().filter(|(r, _)| r.category == Category::Pii).count();
    println!(
        "catalog: {} rules, {creds} credential, {pii} pii; off by default: {:?}",
        built.len(),
        catalog::OFF_BY_DEFAULT
    );
    assert!(creds >= 40, "{creds} credential formats");
    for (r, on) in &built {
        assert_eq!(*on, !catalog::OFF_BY_DEFAULT.contains(&r.id.as_str()));
        assert!(r.terminator.is_some() || r.max_len <= 256, "{} max_len {}", r.id, r.max_len);
    }
}

#[test]
fn hold_back_is_bounded_by_the_largest_token() {
    let s = rules_by_default(false);
    assert!(s.hold() <= 257, "hold {}", s.hold());
}

/// The corpus streamed in small chunks gives exactly the whole-text redaction.
#[test]
fn corpus_streams_like_whole_text() {
    let s = rules_by_default(false);
    let text: String = positives().iter().map(|c| c.text.clone()).collect::<Vec<_>>().join("\n\n");
    for chunk in [1usize, 7, 32, 333] {
        let mut hb = HoldBack::new();
        let mut out = String::new();
        let mut at = 0;
        while at < text.len() {
            let mut end = (at + chunk).min(text.len());
            while !text.is_char_boundary(end) {
                end += 1;
            }
            hb.push(&s, &text[at..end], &mut out);
            at = end;
        }
        hb.finish(&s, &mut out);
        assert!(out == s.redact(&text).0, "chunk {chunk}: stream differs from whole-text redaction");
    }
}

/// A JWT longer than the rule's bound is still made unusable: its header and the start of its
/// payload are redacted.
#[test]
fn long_jwt_is_cut() {
    let mut g = Gen(StdRng::seed_from_u64(7));
    let jwt = format!(
        "{}.{}.{}",
        b64url_json("{\"alg\":\"RS256\",\"typ\":\"JWT\",\"kid\":\"2024-05-key\"}"),
        b64url_json(&format!("{{\"sub\":\"{}\",\"scope\":\"{}\"}}", g.s(ALNUM, 20), g.s(LOWER, 300))),
        g.s(B64URL, 342)
    );
    let s = rules_by_default(true);
    let (red, f) = s.redact(&jwt);
    assert_eq!(f.len(), 1);
    assert!(red.starts_with("[REDACTED:jwt]"), "{red}");
}
