//! Prometheus metrics (`GET /metrics`). The request middleware, the inference path and the
//! store feed them; gauges of the store are read at scrape time.

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Every method label.
pub const METHOD_LABELS: [&str; 8] = [
    "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "other",
];
/// The route label of requests refused for want of a (valid) key.
pub const UNAUTHENTICATED_ROUTE: &str = "unauthenticated";

/// The method as a label: one of a closed set, so random methods cannot add series.
pub fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: &'static str,
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_seconds: Family<RouteLabels, Histogram>,
    pub inference_seconds: Histogram,
    pub busy: Counter,
    pub auth_failures: Counter,
    /// Connections refused at `server.max_connections`.
    pub connections_refused: Counter,
    pub connections_open: Gauge,
    pub search_seconds: Histogram,
    persons: Gauge,
    collections: Gauge,
    in_flight: Gauge,
    index_bytes: Gauge,
    /// Cameras, decisions, outbox and MQTT.
    pub daemon: crate::daemon::metrics::DaemonMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("facegate");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests answered", requests.clone());
        let request_seconds = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 14))
        });
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request",
            request_seconds.clone(),
        );
        let inference_seconds = Histogram::new(exponential_buckets(0.005, 2.0, 12));
        registry.register(
            "inference_duration_seconds",
            "Time from queueing an image to its analysis (decode, detect, landmarks, embed)",
            inference_seconds.clone(),
        );
        let search_seconds = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        registry.register(
            "search_duration_seconds",
            "Time of one 1:N index search with re-scoring",
            search_seconds.clone(),
        );
        let busy = Counter::default();
        registry.register(
            "inference_rejected",
            "Requests refused with ERR_BUSY because the inference queue was full",
            busy.clone(),
        );
        let auth_failures = Counter::default();
        registry.register(
            "auth_failures",
            "Requests with a wrong API key",
            auth_failures.clone(),
        );
        let connections_refused = Counter::default();
        registry.register(
            "http_connections_refused",
            "Connections answered 503 and closed because server.max_connections were open",
            connections_refused.clone(),
        );
        let connections_open = Gauge::default();
        registry.register(
            "http_connections_open",
            "Client connections open now",
            connections_open.clone(),
        );
        let persons = Gauge::default();
        registry.register("store_persons", "Enrolled persons", persons.clone());
        let collections = Gauge::default();
        registry.register("store_collections", "Collections", collections.clone());
        let in_flight = Gauge::default();
        registry.register(
            "inference_in_flight",
            "Images queued or being analysed",
            in_flight.clone(),
        );
        let index_bytes = Gauge::default();
        registry.register(
            "index_bytes",
            "Memory held by the search indexes",
            index_bytes.clone(),
        );
        // Every series a client without a key can reach is created now, so that nothing such a
        // client sends creates one: refusals (any method, 401/403/429) and public reads.
        for method in METHOD_LABELS {
            for status in [401, 403, 429] {
                let _ = requests.get_or_create(&RequestLabels {
                    method,
                    route: UNAUTHENTICATED_ROUTE.to_owned(),
                    status,
                });
            }
        }
        for route in ["/health", "/metrics", "/openapi.json"] {
            let _ = requests.get_or_create(&RequestLabels {
                method: "GET",
                route: route.to_owned(),
                status: 200,
            });
            let _ = request_seconds.get_or_create(&RouteLabels {
                route: route.to_owned(),
            });
        }
        let _ = request_seconds.get_or_create(&RouteLabels {
            route: UNAUTHENTICATED_ROUTE.to_owned(),
        });
        let daemon = crate::daemon::metrics::DaemonMetrics::register(&mut registry);
        Self {
            daemon,
            registry,
            requests,
            request_seconds,
            inference_seconds,
            busy,
            auth_failures,
            connections_refused,
            connections_open,
            search_seconds,
            persons,
            collections,
            in_flight,
            index_bytes,
        }
    }

    pub fn observe_request(&self, method: &'static str, route: &str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                method,
                route: route.to_owned(),
                status,
            })
            .inc();
        self.request_seconds
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
            })
            .observe(seconds);
    }

    /// The text exposition, with the gauges set from current values.
    pub fn render(
        &self,
        collections: usize,
        persons: usize,
        in_flight: usize,
        index_bytes: usize,
    ) -> String {
        self.collections.set(collections as i64);
        self.persons.set(persons as i64);
        self.in_flight.set(in_flight as i64);
        self.index_bytes.set(index_bytes as i64);
        let mut out = String::new();
        let _ = encode(&mut out, &self.registry);
        out
    }
}
