//! Logging and tracing: `tracing` to stderr (text or JSON), and OpenTelemetry traces and metrics
//! exported over OTLP/HTTP when the policy names an endpoint (off otherwise).

use std::sync::Arc;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

use crate::config::Telemetry;
use crate::metrics::Metrics;

/// Keeps exporters alive; flushes them when dropped.
#[derive(Default)]
pub struct Guard {
    #[cfg(feature = "otel")]
    tracer: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
    #[cfg(feature = "otel")]
    meter: Option<opentelemetry_sdk::metrics::SdkMeterProvider>,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("telemetry::Guard")
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        #[cfg(feature = "otel")]
        {
            if let Some(t) = self.tracer.take() {
                let _ = t.shutdown();
            }
            if let Some(m) = self.meter.take() {
                let _ = m.shutdown();
            }
        }
    }
}

/// Installs the global subscriber. `json_flag` (the CLI's `--json-logs`) overrides the policy.
pub fn init(t: &Telemetry, json_flag: bool, metrics: Option<Arc<Metrics>>) -> Guard {
    let filter = EnvFilter::try_from_env("FIREBREAK_LOG")
        .or_else(|_| EnvFilter::try_new(t.log_level.as_deref().unwrap_or("info")))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let json = json_flag || t.json_logs;
    // Colours only on a terminal: log files and collectors get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none();
    let fmt_text = (!json)
        .then(|| tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_target(false).with_ansi(ansi));
    let fmt_json =
        json.then(|| tracing_subscriber::fmt::layer().json().with_writer(std::io::stderr).with_current_span(true));
    #[allow(unused_mut)]
    let mut guard = Guard::default();
    #[cfg(feature = "otel")]
    let otel_layer = match &t.otlp_endpoint {
        Some(ep) => match otel::start(ep, &t.service_name, metrics) {
            Ok((tracer_provider, meter_provider)) => {
                use opentelemetry::trace::TracerProvider as _;
                let tracer = tracer_provider.tracer("firebreak");
                guard.tracer = Some(tracer_provider);
                guard.meter = Some(meter_provider);
                Some(tracing_opentelemetry::layer().with_tracer(tracer))
            }
            Err(e) => {
                eprintln!("firebreak: OpenTelemetry export disabled: {e}");
                None
            }
        },
        None => None,
    };
    #[cfg(not(feature = "otel"))]
    {
        let _ = metrics;
        if t.otlp_endpoint.is_some() {
            eprintln!("firebreak: this build has no OpenTelemetry support (feature `otel`); export disabled");
        }
    }
    let registry = tracing_subscriber::registry().with(filter).with(fmt_text).with(fmt_json);
    #[cfg(feature = "otel")]
    let registry = registry.with(otel_layer);
    let _ = registry.try_init();
    guard
}

#[cfg(feature = "otel")]
mod otel {
    use std::sync::Arc;

    use opentelemetry::metrics::MeterProvider as _;
    use opentelemetry_otlp::WithExportConfig;
    use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use opentelemetry_sdk::Resource;

    use crate::metrics::Metrics;

    pub fn start(
        endpoint: &str,
        service: &str,
        metrics: Option<Arc<Metrics>>,
    ) -> Result<(SdkTracerProvider, SdkMeterProvider), String> {
        let base = endpoint.trim_end_matches('/');
        let resource = Resource::builder().with_service_name(service.to_owned()).build();
        let spans = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(format!("{base}/v1/traces"))
            .build()
            .map_err(|e| e.to_string())?;
        let tracer = SdkTracerProvider::builder().with_batch_exporter(spans).with_resource(resource.clone()).build();
        let exporter = opentelemetry_otlp::MetricExporter::builder()
            .with_http()
            .with_endpoint(format!("{base}/v1/metrics"))
            .build()
            .map_err(|e| e.to_string())?;
        // The interval comes from OTEL_METRIC_EXPORT_INTERVAL (ms; the SDK's default is 60 s).
        let reader = PeriodicReader::builder(exporter).build();
        let meter_provider = SdkMeterProvider::builder().with_reader(reader).with_resource(resource).build();
        if let Some(m) = metrics {
            let meter = meter_provider.meter("firebreak");
            let m1 = m.clone();
            let _requests = meter
                .u64_observable_counter("firebreak.requests")
                .with_description("AI requests by endpoint and status")
                .with_callback(move |obs| {
                    for ((ep, status), n) in m1.request_counts() {
                        obs.observe(
                            n,
                            &[
                                opentelemetry::KeyValue::new("endpoint", ep),
                                opentelemetry::KeyValue::new("status", i64::from(status)),
                            ],
                        );
                    }
                })
                .build();
            let m2 = m.clone();
            let _decisions = meter
                .u64_observable_counter("firebreak.decisions")
                .with_description("Policy decisions by rule and action")
                .with_callback(move |obs| {
                    for ((rule, action), n) in m2.decision_counts() {
                        obs.observe(
                            n,
                            &[
                                opentelemetry::KeyValue::new("rule", rule),
                                opentelemetry::KeyValue::new("action", action),
                            ],
                        );
                    }
                })
                .build();
            let _version = meter
                .u64_observable_gauge("firebreak.switch_version")
                .with_description("Version of the switch snapshot in force")
                .with_callback(move |obs| obs.observe(m.switch_version(), &[]))
                .build();
        }
        Ok((tracer, meter_provider))
    }
}
