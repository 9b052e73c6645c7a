//! The built-in detector catalog: credential formats and PII, each with a stable id, a category and
//! a severity.
//!
//! [`builtin`] compiles every rule (once per policy) and says, for each, whether it is on by
//! default: a policy turns default-on rules off by id and off-by-default rules ([`OFF_BY_DEFAULT`]:
//! IP addresses, which are everywhere in logs and code) on by id.
//!
//! How each rule keeps false positives out:
//! - a distinctive prefix (`ghp_`, `xoxb-`, `AKIA`, `sk-ant-api03-`…) is the prefilter keyword, and the
//!   regex pins the exact alphabet and length, with word boundaries so that a longer random string
//!   is not matched in part;
//! - formats without a prefix (AWS secret keys, Datadog, Cloudflare, Heroku, Twilio auth tokens…) are
//!   matched only in an assignment next to their name (`aws_secret_access_key = …`);
//! - validators: [`validate::token`] (no placeholder words, no runs of 6 identical characters, at
//!   least 3.0 bits/char), checksums (Luhn with issuer prefixes, IBAN mod-97), SSN ranges, NANP
//!   area codes, the JWT header decoding to JSON with `alg`;
//! - `generic_secret` (keywords `password`, `passwd`, `pwd`, `secret`, `api_key`, `apikey`,
//!   `token`, `access_key`, `client_secret`…, then `:`/`=` and a value of 8–80 characters) requires
//!   [`validate::generic_secret`]: **at least 3.5 bits/char of Shannon entropy** (so, in practice,
//!   at least 12 characters, since n distinct characters give at most log2(n) bits), a digit, and
//!   none of the placeholder words (`changeme`, `example`, `your_`, `${`, `<`…).
//!
//! Lengths: every pattern is bounded and no match is longer than its rule's `max_len`, which drives
//! the streaming hold-back (the largest non-block `max_len`, 256 bytes: JWTs). Tokens longer than
//! their rule's bound (JWTs with long payloads, very long Vault or OAuth tokens) are redacted in
//! their first `max_len` bytes, which leaves the token unusable. Private-key blocks are unbounded
//! (terminator rules): held from `-----BEGIN` to the closing line or a 16 KiB cap.
//!
//! Order matters: when two rules find the same span, the earlier one in this list names it (so a
//! Slack token in `token = xoxb-…` is `slack_bot_token`, not `generic_secret`).

use super::rule::{Anchor, Category, Rule, RuleError, Severity, Validator};
use super::validate;

/// Built-in rules that a policy must switch on by id.
pub const OFF_BY_DEFAULT: &[&str] = &["ipv4_address", "ipv6_address"];

/// Whether a built-in rule is on unless the policy disables it.
pub fn default_on(id: &str) -> bool {
    !OFF_BY_DEFAULT.contains(&id)
}

/// Unbounded private-key blocks: held up to this many bytes when their closing line is missing.
pub const BLOCK_CAP: usize = 16384;

/// Where a rule looks.
enum At {
    /// Keywords (ASCII case-insensitive).
    Kw(&'static [&'static str]),
    /// Runs of at least this many digits.
    Digits(usize),
}

struct Def {
    id: &'static str,
    cat: Category,
    sev: Severity,
    at: At,
    pat: &'static str,
    max_len: usize,
    group: usize,
    before: usize,
    validator: Option<Validator>,
    terminator: Option<&'static str>,
}

use Category::{Credential as C, Pii as P};
use Severity::{Critical, High, Low, Medium};

/// A prefix token: keyword anchor, whole match, [`validate::token`].
const fn tok(id: &'static str, sev: Severity, kw: &'static [&'static str], pat: &'static str, max_len: usize) -> Def {
    Def {
        id,
        cat: C,
        sev,
        at: At::Kw(kw),
        pat,
        max_len,
        group: 0,
        before: 0,
        validator: Some(validate::token),
        terminator: None,
    }
}

/// Like [`tok`], the secret being capture group 1 (the pattern checks the character after it).
const fn tok1(id: &'static str, sev: Severity, kw: &'static [&'static str], pat: &'static str, max_len: usize) -> Def {
    Def { group: 1, ..tok(id, sev, kw, pat, max_len) }
}

/// A private-key block, held until its closing line or [`BLOCK_CAP`].
const fn block(id: &'static str, kw: &'static [&'static str], pat: &'static str, term: &'static str) -> Def {
    Def {
        id,
        cat: C,
        sev: Critical,
        at: At::Kw(kw),
        pat,
        max_len: BLOCK_CAP,
        group: 0,
        before: 0,
        validator: None,
        terminator: Some(term),
    }
}

/// A PII rule.
const fn pii(
    id: &'static str,
    sev: Severity,
    at: At,
    pat: &'static str,
    max_len: usize,
    before: usize,
    v: Validator,
) -> Def {
    Def { id, cat: P, sev, at, pat, max_len, group: 1, before, validator: Some(v), terminator: None }
}

const DEFS: &[Def] = &[
    // ---- Cloud providers -------------------------------------------------------------------
    tok(
        "aws_access_key_id",
        Critical,
        &["AKIA", "ASIA", "ABIA", "ACCA", "AGPA", "AIDA", "AIPA", "ANPA", "ANVA", "AROA", "APKA"],
        r"\b(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|AROA|APKA)[A-Z0-9]{16}\b",
        20,
    ),
    tok1(
        "aws_secret_access_key",
        Critical,
        &["aws_secret", "secret_access_key", "secretaccesskey", "aws secret"],
        r#"(?i:aws_?secret(?:_?access)?(?:_?key)?|secret_?access_?key|aws secret(?: access)? key)["']?\s{0,4}(?::|=|:=|=>)\s{0,4}["']?([A-Za-z0-9/+]{40})(?:[^A-Za-z0-9/+=]|$)"#,
        120,
    ),
    Def {
        id: "gcp_service_account_key",
        group: 1,
        ..block(
            "",
            &["\"private_key\""],
            r#""private_key"\s{0,4}:\s{0,4}"(-----BEGIN [A-Z ]{0,24}PRIVATE KEY-----(?s:.*?-----END [A-Z ]{0,24}PRIVATE KEY-----|.*))"#,
            "PRIVATE KEY-----",
        )
    },
    tok1("gcp_api_key", High, &["AIza"], r"\b(AIza[0-9A-Za-z_\-]{35})(?:[^0-9A-Za-z_\-]|$)", 45),
    tok1("gcp_oauth_client_secret", High, &["GOCSPX-"], r"\b(GOCSPX-[0-9A-Za-z_\-]{28})(?:[^0-9A-Za-z_\-]|$)", 40),
    tok("gcp_oauth_access_token", High, &["ya29."], r"\bya29\.[0-9A-Za-z_\-]{30,190}", 200),
    tok1(
        "azure_storage_account_key",
        Critical,
        &["accountkey", "account_key", "azure_storage_key"],
        r#"(?i:account_?key|azure_storage_key)["']?\s{0,4}(?::|=|:=|=>)\s{0,4}["']?([A-Za-z0-9+/]{86}==)"#,
        130,
    ),
    tok1("azure_shared_access_key", High, &["SharedAccessKey="], r"(?i:SharedAccessKey)=([A-Za-z0-9+/]{42,43}=)", 70),
    tok1("azure_sas_token", High, &["sig="], r"\bsig=((?:[A-Za-z0-9+/]|%2[BbFf]){43}(?:=|%3[Dd]))", 140),
    Def {
        before: 5,
        ..tok1(
            "azure_ad_client_secret",
            High,
            &["Q~"],
            r"(?:^|[^A-Za-z0-9_~.\-])([A-Za-z0-9_~.]{3}[0-9]Q~[A-Za-z0-9_~.\-]{31,34})(?:[^A-Za-z0-9_~.\-]|$)",
            50,
        )
    },
    tok("digitalocean_token", High, &["dop_v1_", "doo_v1_", "dor_v1_"], r"\bdo[opr]_v1_[a-f0-9]{64}\b", 72),
    tok1(
        "heroku_api_key",
        High,
        &["heroku"],
        r#"(?i:heroku)[A-Za-z0-9_\-]{0,24}?["']?\s{0,4}(?::|=|:=|=>)\s{0,4}["']?([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})\b"#,
        100,
    ),
    tok("heroku_platform_token", High, &["HRKU-"], r"\bHRKU-[A-Za-z0-9_\-]{40,70}", 80),
    tok1(
        "cloudflare_api_token",
        High,
        &["cloudflare", "cf_api_"],
        r#"(?i:cloudflare|cf)[A-Za-z0-9_\-]{0,24}?(?i:token|key)["']?\s{0,4}(?::|=|:=|=>)\s{0,4}["']?([A-Za-z0-9_\-]{40}|[0-9a-f]{37})(?:[^A-Za-z0-9_\-]|$)"#,
        120,
    ),
    tok("databricks_token", High, &["dapi"], r"\bdapi[a-f0-9]{32}(?:-[0-9])?\b", 40),
    tok("supabase_token", High, &["sbp_"], r"\bsbp_[a-f0-9]{40}\b", 45),
    // ---- AI providers ------------------------------------------------------------------------
    Def {
        validator: Some(validate::openai_key),
        ..tok("openai_api_key", Critical, &["sk-"], r"\bsk-(?:proj-|svcacct-|admin-|None-)?[A-Za-z0-9_\-]{20,180}", 200)
    },
    tok("anthropic_api_key", Critical, &["sk-ant-api"], r"\bsk-ant-api[0-9]{2}-[A-Za-z0-9_\-]{80,120}", 140),
    tok("anthropic_admin_key", Critical, &["sk-ant-admin"], r"\bsk-ant-admin[0-9]{2}-[A-Za-z0-9_\-]{80,120}", 140),
    tok("huggingface_token", High, &["hf_"], r"\bhf_[A-Za-z0-9]{30,40}\b", 45),
    tok("groq_api_key", High, &["gsk_"], r"\bgsk_[A-Za-z0-9]{52}\b", 56),
    tok("replicate_api_token", High, &["r8_"], r"\br8_[A-Za-z0-9]{37}\b", 40),
    tok("perplexity_api_key", High, &["pplx-"], r"\bpplx-[A-Za-z0-9]{48}\b", 53),
    tok("xai_api_key", High, &["xai-"], r"\bxai-[A-Za-z0-9]{80}\b", 84),
    // ---- Source hosting and package registries -------------------------------------------------
    tok("github_pat", High, &["ghp_"], r"\bghp_[A-Za-z0-9]{36}\b", 40),
    tok("github_oauth_token", High, &["gho_"], r"\bgho_[A-Za-z0-9]{36}\b", 40),
    tok("github_user_to_server_token", High, &["ghu_"], r"\bghu_[A-Za-z0-9]{36}\b", 40),
    tok("github_app_installation_token", High, &["ghs_"], r"\bghs_[A-Za-z0-9]{36}\b", 40),
    tok("github_refresh_token", High, &["ghr_"], r"\bghr_[A-Za-z0-9]{36,76}\b", 80),
    tok("github_fine_grained_pat", High, &["github_pat_"], r"\bgithub_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59}\b", 93),
    tok("gitlab_pat", High, &["glpat-"], r"\bglpat-[A-Za-z0-9_\-]{20,80}", 90),
    tok("gitlab_deploy_token", High, &["gldt-"], r"\bgldt-[A-Za-z0-9_\-]{20,60}", 70),
    tok("gitlab_runner_token", High, &["glrt-", "GR1348941"], r"\b(?:glrt-|GR1348941)[A-Za-z0-9_\-]{20,60}", 70),
    tok("gitlab_trigger_token", High, &["glptt-"], r"\bglptt-[0-9a-f]{40}\b", 46),
    tok("npm_token", High, &["npm_"], r"\bnpm_[A-Za-z0-9]{36}\b", 40),
    tok("pypi_token", High, &["pypi-AgE"], r"\bpypi-AgE[A-Za-z0-9_\-]{50,190}", 200),
    // ---- Messaging -------------------------------------------------------------------------------
    tok("slack_bot_token", High, &["xoxb-"], r"\bxoxb-[0-9]{8,14}-[0-9]{8,14}-[A-Za-z0-9]{20,40}", 80),
    tok(
        "slack_user_token",
        High,
        &["xoxp-", "xoxa-", "xoxr-", "xoxe"],
        r"\bxox(?:[par]|e(?:\.xox[pa])?)-[0-9]{1,14}-[0-9A-Za-z\-]{20,160}",
        190,
    ),
    tok("slack_app_token", High, &["xapp-"], r"\bxapp-[0-9]-[A-Z0-9]{9,12}-[0-9]{10,14}-[a-f0-9]{64}\b", 100),
    Def {
        before: 8,
        ..tok(
            "slack_webhook",
            High,
            &["hooks.slack.com/"],
            r"(?:https?://)?hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/]{20,120}",
            160,
        )
    },
    Def {
        before: 16,
        ..tok(
            "discord_webhook",
            High,
            &["discord.com/api/webhooks/", "discordapp.com/api/webhooks/"],
            r"https://(?:(?:ptb|canary)\.)?discord(?:app)?\.com/api/webhooks/[0-9]{17,20}/[A-Za-z0-9_\-]{60,68}",
            160,
        )
    },
    tok1(
        "discord_bot_token",
        High,
        &["discord", "bot "],
        r"(?:(?i:discord)(?s:.){0,60}?|(?i:bot)\s)\b([MNO][A-Za-z0-9_\-]{23,27}\.[A-Za-z0-9_\-]{6}\.[A-Za-z0-9_\-]{27,40})(?:[^A-Za-z0-9_\-]|$)",
        150,
    ),
    Def {
        before: 10,
        ..tok1("telegram_bot_token", High, &[":AA"], r"\b([0-9]{8,10}:AA[0-9A-Za-z_\-]{33})(?:[^0-9A-Za-z_\-]|$)", 50)
    },
    tok1("twilio_api_key", High, &["SK"], r"\b(SK[0-9a-f]{32})\b", 34),
    tok1(
        "twilio_auth_token",
        High,
        &["auth_token", "authtoken", "auth token"],
        r#"(?i:auth_?token|auth token)["']?\s{0,4}(?::|=|:=|=>)\s{0,4}["']?([0-9a-f]{32})\b"#,
        80,
    ),
    tok1(
        "sendgrid_api_key",
        High,
        &["SG."],
        r"\b(SG\.[A-Za-z0-9_\-]{22}\.[A-Za-z0-9_\-]{43})(?:[^A-Za-z0-9_\-]|$)",
        75,
    ),
    tok("mailgun_api_key", High, &["key-"], r"\bkey-[0-9a-f]{32}\b", 40),
    Def { before: 32, ..tok("mailchimp_api_key", High, &["-us"], r"\b[0-9a-f]{32}-us[0-9]{1,2}\b", 40) },
    // ---- Payments and commerce -----------------------------------------------------------------
    tok("stripe_live_key", Critical, &["sk_live_", "rk_live_"], r"\b[rs]k_live_[0-9A-Za-z]{24,99}", 110),
    tok("stripe_test_key", Medium, &["sk_test_", "rk_test_"], r"\b[rs]k_test_[0-9A-Za-z]{24,99}", 110),
    tok("stripe_webhook_secret", High, &["whsec_"], r"\bwhsec_[A-Za-z0-9+/=]{32,64}", 75),
    tok(
        "shopify_token",
        High,
        &["shpat_", "shpca_", "shppa_", "shpss_"],
        r"\bshp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}\b",
        40,
    ),
    tok1(
        "square_access_token",
        High,
        &["sq0atp-", "EAAA"],
        r"\b(sq0atp-[0-9A-Za-z_\-]{22}|EAAA[A-Za-z0-9_\-]{60})(?:[^0-9A-Za-z_\-]|$)",
        70,
    ),
    tok1("square_oauth_secret", High, &["sq0csp-"], r"\b(sq0csp-[0-9A-Za-z_\-]{43})(?:[^0-9A-Za-z_\-]|$)", 55),
    // ---- Observability, secrets managers, SaaS ------------------------------------------------
    tok1(
        "datadog_api_key",
        High,
        &["datadog", "dd_api_key", "dd_app_key", "dd-api-key", "dd_application_key", "dd-application-key"],
        r#"(?i:datadog[_\-\s]?(?:api|app(?:lication)?)?[_\-\s]?key|dd[_\-](?:api|app(?:lication)?)[_\-]key)["']?\s{0,4}(?::|=|:=|=>)\s{0,4}["']?([0-9a-f]{40}|[0-9a-f]{32})\b"#,
        110,
    ),
    tok("newrelic_user_api_key", High, &["NRAK-"], r"\bNRAK-[A-Z0-9]{27}\b", 32),
    tok1("newrelic_insert_key", High, &["NRII-"], r"\b(NRII-[A-Za-z0-9_\-]{32})(?:[^A-Za-z0-9_\-]|$)", 40),
    Def { before: 36, ..tok("newrelic_license_key", High, &["NRAL"], r"\b[a-f0-9]{36}NRAL\b", 40) },
    Def {
        before: 140,
        ..tok1(
            "sentry_dsn",
            Medium,
            &["sentry.io"],
            r"\bhttps?://([0-9a-f]{32}(?::[0-9a-f]{32})?)@[a-z0-9.\-]{0,60}?\bsentry\.io/[0-9]{1,12}",
            200,
        )
    },
    tok(
        "sentry_auth_token",
        High,
        &["sntrys_", "sntryu_"],
        r"\b(?:sntryu_[a-f0-9]{64}\b|sntrys_[A-Za-z0-9+/=_]{60,190})",
        200,
    ),
    tok("grafana_service_account_token", High, &["glsa_"], r"\bglsa_[A-Za-z0-9]{32}_[A-Fa-f0-9]{8}\b", 46),
    tok("grafana_cloud_token", High, &["glc_"], r"\bglc_[A-Za-z0-9+/]{32,200}={0,2}", 210),
    tok(
        "doppler_token",
        High,
        &["dp.st.", "dp.pt.", "dp.ct.", "dp.sa.", "dp.scim.", "dp.audit."],
        r"\bdp\.(?:st|pt|ct|sa|scim|audit)\.(?:[a-z0-9_\-]{2,35}\.)?[A-Za-z0-9]{40,44}\b",
        100,
    ),
    tok("vault_token", Critical, &["hvs.", "hvb.", "hvr."], r"\bhv[sbr]\.[A-Za-z0-9_\-]{24,180}", 190),
    tok("atlassian_api_token", High, &["ATATT3", "ATCTT3"], r"\bAT[AC]TT3[A-Za-z0-9_\-=]{150,200}", 210),
    tok("linear_api_key", High, &["lin_api_"], r"\blin_api_[A-Za-z0-9]{40}\b", 50),
    tok("postman_api_key", High, &["PMAK-"], r"\bPMAK-[a-f0-9]{24}-[a-f0-9]{34}\b", 65),
    tok1(
        "okta_api_token",
        High,
        &["okta", "SSWS "],
        r#"(?:(?i:okta)[A-Za-z0-9_\-]{0,24}?["']?\s{0,4}(?::|=|:=|=>)\s{0,4}["']?|SSWS\s{1,4})\b(00[A-Za-z0-9_\-]{40})(?:[^A-Za-z0-9_\-]|$)"#,
        110,
    ),
    tok(
        "age_secret_key",
        Critical,
        &["AGE-SECRET-KEY-1"],
        r"\bAGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58}\b",
        75,
    ),
    // ---- Tokens, keys and connection strings of any provider -----------------------------------
    Def {
        validator: Some(validate::jwt),
        ..tok(
            "jwt",
            High,
            &["eyJ"],
            r"\beyJ[A-Za-z0-9_\-]{8,96}\.eyJ[A-Za-z0-9_\-]{2,110}(?:\.[A-Za-z0-9_\-]{0,40})?",
            256,
        )
    },
    block(
        "openssh_private_key",
        &["-----BEGIN OPENSSH"],
        r"-----BEGIN OPENSSH PRIVATE KEY-----(?s:.*?-----END OPENSSH PRIVATE KEY-----|.*)",
        "PRIVATE KEY-----",
    ),
    block(
        "pgp_private_key",
        &["-----BEGIN PGP PRIVATE"],
        r"-----BEGIN PGP PRIVATE KEY BLOCK-----(?s:.*?-----END PGP PRIVATE KEY BLOCK-----|.*)",
        "PRIVATE KEY BLOCK-----",
    ),
    block(
        "private_key_pem",
        &["-----BEGIN"],
        r"-----BEGIN [A-Z0-9 ]{0,24}PRIVATE KEY-----(?s:.*?-----END [A-Z0-9 ]{0,24}PRIVATE KEY-----|.*)",
        "PRIVATE KEY-----",
    ),
    Def {
        validator: Some(validate::uri_password),
        ..tok1(
            "postgres_uri_password",
            Critical,
            &["postgres://", "postgresql://", "postgres+", "postgresql+"],
            r#"\bpostgres(?:ql)?(?:\+[a-z0-9]{1,16})?://[^\s:@/?#"'<>]{0,48}:([^\s@/?#"'<>]{1,100})@[A-Za-z0-9.\-\[]"#,
            190,
        )
    },
    Def {
        validator: Some(validate::uri_password),
        ..tok1(
            "mysql_uri_password",
            Critical,
            &["mysql://", "mysql+", "mariadb://", "mariadb+"],
            r#"\b(?:mysql|mariadb)(?:\+[a-z0-9]{1,16})?://[^\s:@/?#"'<>]{0,48}:([^\s@/?#"'<>]{1,100})@[A-Za-z0-9.\-\[]"#,
            190,
        )
    },
    Def {
        validator: Some(validate::uri_password),
        ..tok1(
            "mongodb_uri_password",
            Critical,
            &["mongodb://", "mongodb+srv://"],
            r#"\bmongodb(?:\+srv)?://[^\s:@/?#"'<>]{0,48}:([^\s@/?#"'<>]{1,100})@[A-Za-z0-9.\-\[]"#,
            190,
        )
    },
    Def {
        validator: Some(validate::uri_password),
        ..tok1(
            "redis_uri_password",
            Critical,
            &["redis://", "rediss://"],
            r#"\brediss?://[^\s:@/?#"'<>]{0,48}:([^\s@/?#"'<>]{1,100})@[A-Za-z0-9.\-\[]"#,
            190,
        )
    },
    Def {
        validator: Some(validate::uri_password),
        ..tok1(
            "amqp_uri_password",
            Critical,
            &["amqp://", "amqps://"],
            r#"\bamqps?://[^\s:@/?#"'<>]{0,48}:([^\s@/?#"'<>]{1,100})@[A-Za-z0-9.\-\[]"#,
            190,
        )
    },
    Def {
        validator: Some(validate::uri_password),
        ..tok1(
            "basic_auth_url",
            High,
            &["http://", "https://", "ftp://", "ftps://"],
            r#"\b(?:https?|ftps?)://[^\s:@/?#"'<>]{1,48}:([^\s@/?#"'<>]{1,100})@[A-Za-z0-9.\-\[]"#,
            170,
        )
    },
    Def {
        validator: Some(validate::generic_assignment),
        ..tok1(
            "generic_secret",
            High,
            &[
                "password",
                "passwd",
                "pwd",
                "secret",
                "api_key",
                "apikey",
                "api-key",
                "token",
                "access_key",
                "access-key",
            ],
            r#"(?i:password|passwd|pwd|secret|api[_\-]?key|token|access[_\-]key)[A-Za-z0-9_\-]{0,20}?["']?\s{0,4}(?::|=|:=|=>|->)\s{0,4}["'`]?([^\s"'`,;<>(){}\[\]]{8,80})"#,
            130,
        )
    },
    // ---- PII -----------------------------------------------------------------------------------------
    pii(
        "email",
        Medium,
        At::Kw(&["@"]),
        r"(?:^|[^A-Za-z0-9._%+\-])([A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9.\-]{0,98}[A-Za-z0-9])?\.[A-Za-z]{2,18})\b",
        190,
        65,
        validate::email,
    ),
    pii(
        "us_ssn",
        High,
        At::Digits(9),
        r"(?:^|[^0-9A-Za-z\-])([0-9]{3}-[0-9]{2}-[0-9]{4})(?:[^0-9A-Za-z\-]|$)",
        13,
        1,
        validate::ssn,
    ),
    pii(
        "us_ssn_keyword",
        High,
        At::Kw(&["ssn", "social security"]),
        r"(?i:\bssn|social security(?: number| no\.?| #)?)[\s:#=\-]{0,5}(?:(?i:is)\s)?([0-9]{3}[ \-]?[0-9]{2}[ \-]?[0-9]{4})\b",
        60,
        0,
        validate::ssn,
    ),
    pii(
        "phone_e164",
        Medium,
        At::Digits(7),
        r"(?:^|[^0-9A-Za-z+])(\+[1-9](?:[ .\-]?\(?[0-9]\)?){7,14})(?:[^0-9]|$)",
        64,
        12,
        validate::phone_e164,
    ),
    pii(
        "phone_us",
        Medium,
        At::Digits(7),
        r"(?:^|[^0-9A-Za-z+\-.])((?:\(\s?[2-9][0-9]{2}\s?\)\s?|[2-9][0-9]{2}[\-. ])[2-9][0-9]{2}[\-. ][0-9]{4})(?:[^0-9A-Za-z\-]|$)",
        24,
        8,
        validate::phone_nanp,
    ),
    pii(
        "phone_national",
        Medium,
        At::Digits(7),
        r"(?:^|^\s|[^0-9A-Za-z+\-./\s]|[^0-9\s]\s)(0[1-9][0-9]{0,3}[ /\-][0-9]{2,8}(?:[ \-][0-9]{2,4}){0,4})(?:[^0-9A-Za-z\-/]|$)",
        28,
        8,
        validate::phone_national,
    ),
    pii(
        "payment_card",
        High,
        At::Digits(13),
        r"(?:^|[^0-9A-Za-z])((?:[0-9][ \-]?){12,18}[0-9])(?:[^0-9A-Za-z]|$)",
        26,
        1,
        validate::payment_card,
    ),
    pii(
        "iban",
        High,
        At::Digits(10),
        r"\b([A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){1,2}(?: ?[0-9][A-Z0-9]{3}){1,6}(?: ?[0-9][A-Z0-9]{0,2})?)\b",
        50,
        12,
        validate::iban,
    ),
    pii(
        "ipv4_address",
        Low,
        At::Digits(4),
        r"(?:^|[^0-9A-Za-z.])((?:(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9]))\.?(?:[^0-9A-Za-z.]|$)",
        18,
        1,
        validate::ipv4,
    ),
    pii(
        "ipv6_address",
        Low,
        At::Kw(&["::", "2001:", "2600:", "2a00:", "fe80:", "fd00:"]),
        r"(?:^|[^0-9A-Za-z:.])((?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4})(?:[^0-9A-Za-z:]|$)",
        41,
        40,
        validate::ipv6,
    ),
];

/// Every built-in rule, compiled, with whether it is on by default (see [`OFF_BY_DEFAULT`]), in
/// priority order (specific formats before `generic_secret`).
pub fn builtin() -> Result<Vec<(Rule, bool)>, RuleError> {
    DEFS.iter()
        .map(|d| {
            let anchor = match d.at {
                At::Kw(k) => Anchor::Keywords(k.iter().map(|w| (*w).to_owned()).collect()),
                At::Digits(n) => Anchor::Digits(n),
            };
            let mut r =
                Rule::new(d.id, d.cat, d.sev, anchor, d.pat, d.max_len)?.with_group(d.group)?.with_before(d.before);
            if let Some(v) = d.validator {
                r = r.with_validator(v);
            }
            if let Some(t) = d.terminator {
                r = r.with_terminator(t);
            }
            Ok((r, default_on(d.id)))
        })
        .collect()
}

/// The ids of the built-in rules, in priority order.
pub fn ids() -> impl Iterator<Item = &'static str> {
    DEFS.iter().map(|d| d.id)
}
