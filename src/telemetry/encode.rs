//! Writing metrics in the text format: one sample, or one per label value.

use std::fmt;

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;

pub(super) fn single(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric: impl EncodeMetric,
) -> fmt::Result {
    let metric_type = metric.metric_type();
    labelled(encoder, name, help, metric_type, None, [("", metric)])
}

/// One metric: a single sample when `label` is `None`, else one sample per `(label value,
/// metric)`.
pub(super) fn labelled<'v, M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric_type: MetricType,
    label: Option<&str>,
    values: impl IntoIterator<Item = (&'v str, M)>,
) -> fmt::Result {
    let mut metric_encoder = encoder.encode_descriptor(name, help, None, metric_type)?;
    let Some(label) = label else {
        // An unlabelled metric has one sample.
        return match values.into_iter().next() {
            Some((_, metric)) => metric.encode(metric_encoder),
            None => Ok(()),
        };
    };
    for (label_value, metric) in values {
        metric.encode(metric_encoder.encode_family(&[(label, label_value)])?)?;
    }
    Ok(())
}
