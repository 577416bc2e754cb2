//! The `regret` info metric: how much a prompt still has to teach the policy, from the
//! rewards of the policy's n sampled answers. The default is the eva paper's reward gap
//! (max − min); the other metrics are the paper's ablations.

use eva_plugin_sdk::{Config, ConfigKind, InfoMetric, Metadata, Plugin, PluginError, PromptRewards, field};

/// Which informativeness number to compute.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Metric {
    /// max − min: the regret proxy eva uses by default.
    Gap,
    /// max − mean.
    MaxMean,
    /// Population variance of the rewards.
    Variance,
    /// Mean reward.
    Mean,
    /// 1 − mean, with the mean scaled to [0, 1] by the configured reward range.
    InverseMean,
    /// Best minus second-best reward.
    BestMinusSecond,
    /// The same score for every prompt (sampling becomes uniform).
    Uniform,
}

const METRICS: [(&str, Metric); 7] = [
    ("gap", Metric::Gap),
    ("max-mean", Metric::MaxMean),
    ("variance", Metric::Variance),
    ("mean", Metric::Mean),
    ("inverse-mean", Metric::InverseMean),
    ("best-minus-second", Metric::BestMinusSecond),
    ("uniform", Metric::Uniform),
];

pub struct Regret {
    metric: Metric,
    reward_min: f64,
    reward_max: f64,
}

fn mean(r: &[f64]) -> f64 {
    r.iter().sum::<f64>() / r.len() as f64
}

fn max(r: &[f64]) -> f64 {
    r.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

impl Regret {
    /// The metric over one prompt's rewards (at least one, all finite).
    pub fn compute(&self, rewards: &[f64]) -> f64 {
        match self.metric {
            Metric::Gap => max(rewards) - rewards.iter().copied().fold(f64::INFINITY, f64::min),
            Metric::MaxMean => max(rewards) - mean(rewards),
            Metric::Variance => {
                let m = mean(rewards);
                rewards.iter().map(|r| (r - m) * (r - m)).sum::<f64>() / rewards.len() as f64
            }
            Metric::Mean => mean(rewards),
            Metric::InverseMean => {
                let scaled = (mean(rewards) - self.reward_min) / (self.reward_max - self.reward_min);
                1.0 - scaled.clamp(0.0, 1.0)
            }
            Metric::BestMinusSecond => {
                let mut sorted = rewards.to_vec();
                sorted.sort_by(|a, b| b.total_cmp(a));
                sorted.get(1).map_or(0.0, |second| sorted[0] - second)
            }
            Metric::Uniform => 1.0,
        }
    }
}

impl Plugin for Regret {
    fn metadata() -> Metadata {
        let names: Vec<&str> = METRICS.iter().map(|(n, _)| *n).collect();
        eva_plugin_sdk::metadata!(
            "regret",
            "Prompt informativeness from the rewards of its sampled answers (reward gap by default).",
            vec![
                field("metric", ConfigKind::Text, "gap", &format!("one of: {}", names.join(", "))),
                field("reward-min", ConfigKind::Float, "0.0", "lowest reward, for inverse-mean"),
                field("reward-max", ConfigKind::Float, "1.0", "highest reward, for inverse-mean"),
            ]
        )
    }

    fn from_config(config: &Config) -> Result<Self, PluginError> {
        let name = config.text("metric")?;
        let metric = METRICS.iter().find(|(n, _)| *n == name).map(|(_, m)| *m).ok_or_else(|| {
            let names: Vec<&str> = METRICS.iter().map(|(n, _)| *n).collect();
            PluginError::InvalidConfig(format!("unknown metric `{name}` (one of: {})", names.join(", ")))
        })?;
        let (reward_min, reward_max) = (config.float("reward-min")?, config.float("reward-max")?);
        if reward_max <= reward_min {
            return Err(PluginError::InvalidConfig(format!(
                "reward-max ({reward_max}) must be larger than reward-min ({reward_min})"
            )));
        }
        Ok(Regret { metric, reward_min, reward_max })
    }
}

impl InfoMetric for Regret {
    fn score(&mut self, item: &PromptRewards) -> Result<f64, PluginError> {
        if item.rewards.is_empty() {
            return Err(PluginError::InvalidInput(format!("prompt `{}` has no rewards", item.prompt.id)));
        }
        Ok(self.compute(&item.rewards))
    }
}

eva_plugin_sdk::export_info_metric!(Regret);

#[cfg(test)]
mod tests {
    use super::*;

    fn metric(m: Metric) -> Regret {
        Regret { metric: m, reward_min: 0.0, reward_max: 1.0 }
    }

    #[test]
    fn computes_each_metric_by_hand() {
        let r = [0.2, 0.9, 0.4, 0.5];
        let close = |a: f64, b: f64| assert!((a - b).abs() < 1e-12, "{a} != {b}");
        close(metric(Metric::Gap).compute(&r), 0.7);
        close(metric(Metric::MaxMean).compute(&r), 0.9 - 0.5);
        close(metric(Metric::Variance).compute(&r), (0.09 + 0.16 + 0.01 + 0.0) / 4.0);
        close(metric(Metric::Mean).compute(&r), 0.5);
        close(metric(Metric::InverseMean).compute(&r), 0.5);
        close(metric(Metric::BestMinusSecond).compute(&r), 0.4);
        close(metric(Metric::Uniform).compute(&r), 1.0);
    }

    #[test]
    fn one_answer_has_no_gap() {
        assert_eq!(metric(Metric::Gap).compute(&[3.0]), 0.0);
        assert_eq!(metric(Metric::BestMinusSecond).compute(&[3.0]), 0.0);
    }

    #[test]
    fn inverse_mean_is_clamped_to_the_reward_range() {
        let m = Regret { metric: Metric::InverseMean, reward_min: -1.0, reward_max: 1.0 };
        assert_eq!(m.compute(&[5.0]), 0.0);
        assert_eq!(m.compute(&[-5.0]), 1.0);
        assert_eq!(m.compute(&[0.0]), 0.5);
    }
}
