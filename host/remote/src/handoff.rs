//! Weights handed to servers. A server that takes LoRA adapters at run time (vLLM's
//! `/v1/load_lora_adapter`) only applies them over the model it loaded, the run's base;
//! iteration t's trainer updates θ_t, itself the base plus earlier updates. The updates'
//! sum is one adapter again: LoRA's update is (α/r)·B·A, and a sum of such products is
//! B'·A' with the A's stacked as rows and the scaled B's side by side, of rank Σr. So
//! θ_{t+1} is served exactly, as one adapter of rank t·r.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors, tensor::TensorView};

/// What can go wrong reading or writing adapters; every variant names the directory.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a LoRA adapter eva can stack: {reason}")]
    Bad { path: PathBuf, reason: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

const CONFIG: &str = "adapter_config.json";
const WEIGHTS: &str = "adapter_model.safetensors";

/// A matrix: rows, columns, row-major f32 values.
type Matrix = (usize, usize, Vec<f32>);

/// One update: its scale α/r, its rank, and its matrices by module (`..q_proj`) as
/// (A: r x in, B: out x r).
struct Update {
    scale: f32,
    rank: usize,
    config: serde_json::Value,
    modules: BTreeMap<String, (Matrix, Matrix)>,
}

fn read(dir: &Path) -> Result<Update> {
    let bad = |reason: String| Error::Bad { path: dir.to_owned(), reason };
    let io = |path: PathBuf| move |source| Error::Io { path, source };
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(CONFIG)).map_err(io(dir.join(CONFIG)))?)
            .map_err(|e| bad(format!("{CONFIG}: {e}")))?;
    let rank = config["r"].as_u64().ok_or_else(|| bad(format!("{CONFIG} has no rank `r`")))? as usize;
    let alpha = config["lora_alpha"].as_f64().ok_or_else(|| bad(format!("{CONFIG} has no `lora_alpha`")))?;
    let bytes = std::fs::read(dir.join(WEIGHTS)).map_err(io(dir.join(WEIGHTS)))?;
    let tensors = SafeTensors::deserialize(&bytes).map_err(|e| bad(format!("{WEIGHTS}: {e}")))?;
    let matrix = |name: &str| -> Result<Matrix> {
        let t = tensors.tensor(name).map_err(|e| bad(format!("{name}: {e}")))?;
        if t.dtype() != Dtype::F32 || t.shape().len() != 2 {
            return Err(bad(format!("{name} is {:?} {:?}, not a 2-D f32 matrix", t.dtype(), t.shape())));
        }
        let values = t.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        Ok((t.shape()[0], t.shape()[1], values))
    };
    let mut modules = BTreeMap::new();
    for name in tensors.names() {
        let Some(module) = name.strip_suffix(".lora_A.weight") else { continue };
        let a = matrix(name)?;
        let b = matrix(&format!("{module}.lora_B.weight"))?;
        if a.0 != rank || b.1 != rank {
            return Err(bad(format!("{module}: A is {}x{}, B {}x{}, for rank {rank}", a.0, a.1, b.0, b.1)));
        }
        modules.insert(module.to_owned(), (a, b));
    }
    if modules.is_empty() {
        return Err(bad(format!("{WEIGHTS} holds no lora_A/lora_B pairs")));
    }
    Ok(Update { scale: (alpha / rank as f64) as f32, rank, config, modules })
}

/// Write into `out` (replaced atomically) the one adapter equal to applying every
/// adapter of `updates` in turn (each a PEFT LoRA adapter over the model the previous
/// ones made). Returns its rank.
pub fn stack(updates: &[PathBuf], out: &Path) -> Result<usize> {
    let updates = updates.iter().map(|d| read(d)).collect::<Result<Vec<_>>>()?;
    let first = updates.first().ok_or_else(|| Error::Bad { path: out.to_owned(), reason: "no updates".into() })?;
    let rank: usize = updates.iter().map(|u| u.rank).sum();
    let names: BTreeSet<&String> = updates.iter().flat_map(|u| u.modules.keys()).collect();
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = vec![];
    for name in names {
        // A module an update left alone contributes zeros of its rank.
        let (rows_in, cols_out) = updates
            .iter()
            .find_map(|u| u.modules.get(name).map(|(a, b)| (a.1, b.0)))
            .expect("the name comes from some update");
        let mut a = Vec::with_capacity(rank * rows_in);
        let mut b = vec![0f32; cols_out * rank];
        let mut offset = 0;
        for u in &updates {
            match u.modules.get(name) {
                Some(((_, inputs, av), (outputs, _, bv))) => {
                    if *inputs != rows_in || *outputs != cols_out {
                        return Err(Error::Bad {
                            path: out.to_owned(),
                            reason: format!("{name} changes shape between updates"),
                        });
                    }
                    a.extend_from_slice(av);
                    for row in 0..cols_out {
                        for k in 0..u.rank {
                            b[row * rank + offset + k] = u.scale * bv[row * u.rank + k];
                        }
                    }
                }
                None => a.extend(std::iter::repeat_n(0f32, u.rank * rows_in)),
            }
            offset += u.rank;
        }
        let bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        tensors.push((format!("{name}.lora_A.weight"), vec![rank, rows_in], bytes(&a)));
        tensors.push((format!("{name}.lora_B.weight"), vec![cols_out, rank], bytes(&b)));
    }
    let targets: BTreeSet<String> = updates
        .iter()
        .flat_map(|u| u.config["target_modules"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t.as_str().map(str::to_owned))
        .collect();
    let mut config = first.config.clone();
    // Scale 1: the updates' own scales are in B.
    config["r"] = rank.into();
    config["lora_alpha"] = (rank as f64).into();
    config["target_modules"] = targets.into_iter().collect::<Vec<_>>().into();

    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| Error::Io { path: path.clone(), source }
    };
    let parent = out.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    let tmp = eva_engine::atomic::temp_dir_in(parent, ".eva-save-").map_err(io(parent))?;
    let views = tensors
        .iter()
        .map(|(n, shape, data)| Ok((n.clone(), TensorView::new(Dtype::F32, shape.clone(), data).expect("sizes match"))))
        .collect::<Result<Vec<_>>>()?;
    let weights =
        safetensors::serialize(views, None).map_err(|e| Error::Bad { path: out.to_owned(), reason: e.to_string() })?;
    std::fs::write(tmp.path().join(WEIGHTS), weights).map_err(io(&tmp.path().join(WEIGHTS)))?;
    let text = serde_json::to_string_pretty(&config).expect("json");
    std::fs::write(tmp.path().join(CONFIG), text).map_err(io(&tmp.path().join(CONFIG)))?;
    let kept = tmp.keep();
    eva_engine::atomic::swap_dir(&kept, out).map_err(io(out))?;
    Ok(rank)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An adapter with one module whose matrices are given (row-major).
    fn write(dir: &Path, rank: usize, alpha: f64, module: &str, a: (usize, Vec<f32>), b: (usize, Vec<f32>)) {
        std::fs::create_dir_all(dir).unwrap();
        let bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let (ab, bb) = (bytes(&a.1), bytes(&b.1));
        let views = vec![
            (format!("{module}.lora_A.weight"), TensorView::new(Dtype::F32, vec![rank, a.0], &ab).unwrap()),
            (format!("{module}.lora_B.weight"), TensorView::new(Dtype::F32, vec![b.0, rank], &bb).unwrap()),
        ];
        std::fs::write(dir.join(WEIGHTS), safetensors::serialize(views, None).unwrap()).unwrap();
        let config = serde_json::json!({"peft_type": "LORA", "r": rank, "lora_alpha": alpha,
            "target_modules": [module.rsplit('.').next().unwrap()]});
        std::fs::write(dir.join(CONFIG), config.to_string()).unwrap();
    }

    /// (α/r)·B·A as an out x in matrix.
    fn delta(u: &Update, module: &str) -> Vec<Vec<f32>> {
        let ((r, inputs, a), (outputs, _, b)) = &u.modules[module];
        (0..*outputs)
            .map(|i| {
                (0..*inputs).map(|j| u.scale * (0..*r).map(|k| b[i * r + k] * a[k * inputs + j]).sum::<f32>()).collect()
            })
            .collect()
    }

    #[test]
    fn stacked_updates_equal_their_sum() {
        let dir = tempfile::tempdir().unwrap();
        let q = "base_model.model.model.layers.0.self_attn.q_proj";
        let v = "base_model.model.model.layers.0.self_attn.v_proj";
        // Rank 2 over a 3 -> 2 projection, then rank 1 with another α, plus a module the
        // first update did not touch.
        write(&dir.path().join("u1"), 2, 16.0, q, (3, vec![1., 2., 3., 4., 5., 6.]), (2, vec![0.5, -1., 2., 0.25]));
        write(&dir.path().join("u2"), 1, 4.0, q, (3, vec![-1., 0., 2.]), (2, vec![3., -2.]));
        write(&dir.path().join("u3"), 1, 2.0, v, (3, vec![1., 1., 1.]), (2, vec![1., 2.]));
        let out = dir.path().join("stacked");
        let dirs: Vec<PathBuf> = ["u1", "u2", "u3"].iter().map(|d| dir.path().join(d)).collect();
        assert_eq!(stack(&dirs, &out).unwrap(), 4);
        let stacked = read(&out).unwrap();
        assert_eq!((stacked.rank, stacked.scale), (4, 1.0));
        let (u1, u2, u3) = (read(&dirs[0]).unwrap(), read(&dirs[1]).unwrap(), read(&dirs[2]).unwrap());
        let (d1, d2, got) = (delta(&u1, q), delta(&u2, q), delta(&stacked, q));
        for i in 0..2 {
            for j in 0..3 {
                assert!((got[i][j] - (d1[i][j] + d2[i][j])).abs() < 1e-5, "q[{i}][{j}]");
            }
        }
        assert_eq!(delta(&stacked, v), delta(&u3, v), "a module of one update only");
        let config: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join(CONFIG)).unwrap()).unwrap();
        assert_eq!(config["target_modules"], serde_json::json!(["q_proj", "v_proj"]));
        assert!(stack(&[dir.path().join("none")], &out).is_err(), "a missing update is an error");
    }
}
