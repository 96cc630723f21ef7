//! Prometheus metrics, served at `/metrics` in the text exposition format.

use std::sync::Mutex;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Labels of an HTTP request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The HTTP method.
    pub method: String,
    /// The route pattern (not the path, so ids do not explode the series).
    pub route: String,
    /// The response status.
    pub status: u16,
}

/// Labels of a route.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// The route pattern.
    pub route: String,
}

/// Labels of an actor kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// `agent`, `block` or `tool`.
    pub kind: String,
}

/// The server's metrics.
pub struct Metrics {
    registry: Mutex<Registry>,
    /// Requests served, by method, route and status.
    pub requests: Family<RequestLabels, Counter>,
    /// Request latency in seconds, by route.
    pub latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    /// Actors active now, by kind.
    pub active_actors: Family<KindLabels, Gauge>,
    /// Invocations handled, by kind (replays included).
    pub invocations: Family<KindLabels, Gauge>,
    /// Journal entries replayed at activation, by kind.
    pub journal_replayed: Family<KindLabels, Gauge>,
    /// Journal depth: invocations accepted and not yet answered, by kind.
    pub journal_depth: Family<KindLabels, Gauge>,
    /// Handler panics caught, by kind.
    pub panics: Family<KindLabels, Gauge>,
    /// Requests in flight.
    pub in_flight: Gauge,
    /// Agent loop steps run.
    pub agent_steps: Counter,
}

fn latency_histogram() -> Histogram {
    // 50 µs .. ~100 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 22))
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("kelpie");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests served", requests.clone());
        let latency = Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        registry.register("http_request_duration_seconds", "HTTP request latency", latency.clone());
        let active_actors = Family::<KindLabels, Gauge>::default();
        registry.register("active_actors", "Actors active on this node", active_actors.clone());
        let invocations = Family::<KindLabels, Gauge>::default();
        registry.register(
            "invocations",
            "Actor invocations handled (replays included)",
            invocations.clone(),
        );
        let journal_replayed = Family::<KindLabels, Gauge>::default();
        registry.register(
            "journal_replayed",
            "Journal entries replayed at activation",
            journal_replayed.clone(),
        );
        let journal_depth = Family::<KindLabels, Gauge>::default();
        registry.register(
            "journal_depth",
            "Invocations accepted by an actor and not yet answered",
            journal_depth.clone(),
        );
        let panics = Family::<KindLabels, Gauge>::default();
        registry.register("handler_panics", "Handler panics caught", panics.clone());
        let in_flight = Gauge::default();
        registry.register(
            "http_requests_in_flight",
            "HTTP requests being served",
            in_flight.clone(),
        );
        let agent_steps = Counter::default();
        registry.register("agent_steps", "Agent loop steps run", agent_steps.clone());
        Self {
            registry: Mutex::new(registry),
            requests,
            latency,
            active_actors,
            invocations,
            journal_replayed,
            journal_depth,
            panics,
            in_flight,
            agent_steps,
        }
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        let registry = self.registry.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &registry);
        text
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
