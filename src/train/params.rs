//! The model's tensors as the trainer holds them: each parameter once, by
//! its checkpoint name, with the copy the forward reads (compute dtype) and,
//! only when it trains, its f32 master copy; and the step's gradients, kept
//! only for parameters that train.
//!
//! Invariant: a frozen parameter has no master copy, no gradient and no
//! moments, and nothing ever writes to it.

use crate::kernels::inplace;
use candle_core::{DType, Device, Tensor};
use std::collections::{BTreeMap, HashMap};

/// Index of a parameter in [`Params`].
pub type ParamId = usize;

/// The four parts `--train` chooses among.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Part {
    /// All of `llm1/` (the encoder, its embeddings included).
    Encoder,
    /// `model.Q.weight`, the learned context query.
    Queries,
    /// `model.mm_projector.*`.
    Projector,
    /// The decoder, its (tied) embeddings included.
    Decoder,
}

impl Part {
    pub const ALL: [Part; 4] = [Part::Encoder, Part::Queries, Part::Projector, Part::Decoder];

    pub fn name(self) -> &'static str {
        match self {
            Part::Encoder => "encoder",
            Part::Queries => "queries",
            Part::Projector => "projector",
            Part::Decoder => "decoder",
        }
    }

    pub fn parse(s: &str) -> Option<Part> {
        Part::ALL.into_iter().find(|p| p.name() == s)
    }
}

/// One parameter.
pub struct Param {
    /// Checkpoint name; encoder tensors carry the `llm1/` directory
    /// (`llm1/model.norm.weight`), LoRA adapters end `.lora_A.weight` /
    /// `.lora_B.weight`.
    pub name: String,
    pub part: Part,
    pub shape: Vec<usize>,
    pub trainable: bool,
    /// Weight decay applies (not to biases and norm weights, as
    /// transformers' Trainer excludes them).
    pub decay: bool,
    /// A LoRA adapter tensor (not part of the saved model; merged into it).
    pub adapter: bool,
    master: Option<Tensor>,
    compute: Tensor,
}

impl Param {
    pub fn elem_count(&self) -> usize {
        self.shape.iter().product()
    }

    /// The f32 master copy (trainable parameters only).
    pub fn master(&self) -> Option<&Tensor> {
        self.master.as_ref()
    }

    /// The copy the forward pass reads.
    pub fn compute(&self) -> &Tensor {
        &self.compute
    }
}

/// A LoRA adapter on the weight `{base}.weight`: A [r, in], B [out, r].
#[derive(Debug, Clone)]
pub struct AdapterInfo {
    pub base: String,
    pub a: ParamId,
    pub b: ParamId,
    pub scale: f64,
}

/// Every parameter of the model being trained.
pub struct Params {
    list: Vec<Param>,
    adapters: Vec<AdapterInfo>,
    by_name: HashMap<String, ParamId>,
    dtype: DType,
    device: Device,
}

impl Params {
    /// An empty set computing in `dtype` on `device`.
    pub fn new(dtype: DType, device: &Device) -> Self {
        Self {
            list: Vec::new(),
            adapters: Vec::new(),
            by_name: HashMap::new(),
            dtype,
            device: device.clone(),
        }
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Adds a parameter from its loaded tensor (any float dtype; kept as
    /// f32 master when it trains, in the compute dtype in any case).
    pub fn add(
        &mut self,
        name: &str,
        part: Part,
        t: Tensor,
        trainable: bool,
        adapter: bool,
    ) -> candle_core::Result<ParamId> {
        let master = match trainable {
            true => Some(t.to_dtype(master_dtype(self.dtype))?),
            false => None,
        };
        let compute = match &master {
            Some(m) => m.to_dtype(self.dtype)?,
            None => t.to_dtype(self.dtype)?,
        };
        let id = self.list.len();
        let decay = !(name.ends_with(".bias") || name.ends_with("norm.weight"));
        self.list.push(Param {
            name: name.to_string(),
            part,
            shape: compute.dims().to_vec(),
            trainable,
            decay,
            adapter,
            master,
            compute,
        });
        self.by_name.insert(name.to_string(), id);
        Ok(id)
    }

    /// Records that `a`, `b` adapt the weight `{base}.weight`.
    pub fn register_adapter(&mut self, base: &str, a: ParamId, b: ParamId, scale: f64) {
        self.adapters.push(AdapterInfo {
            base: base.to_string(),
            a,
            b,
            scale,
        });
    }

    pub fn adapters(&self) -> &[AdapterInfo] {
        &self.adapters
    }

    pub fn get(&self, id: ParamId) -> &Param {
        &self.list[id]
    }

    /// The compute copy of parameter `id`.
    pub fn w(&self, id: ParamId) -> &Tensor {
        &self.list[id].compute
    }

    pub fn id(&self, name: &str) -> Option<ParamId> {
        self.by_name.get(name).copied()
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (ParamId, &Param)> {
        self.list.iter().enumerate()
    }

    pub fn trainable(&self, id: ParamId) -> bool {
        self.list[id].trainable
    }

    /// Ids of the parameters that train, in order.
    pub fn trainable_ids(&self) -> Vec<ParamId> {
        (0..self.list.len())
            .filter(|&i| self.trainable(i))
            .collect()
    }

    /// Makes the compute copy follow a master copy updated in place (the
    /// same tensor when computing in the master's dtype).
    pub fn refresh_compute(&mut self, id: ParamId) -> candle_core::Result<()> {
        let p = &mut self.list[id];
        let m = p
            .master
            .as_ref()
            .expect("only trainable parameters are updated");
        p.compute = m.to_dtype(self.dtype)?;
        Ok(())
    }

    /// Replaces a trainable parameter's master copy (and its compute copy).
    pub fn set_master(&mut self, id: ParamId, t: Tensor) -> candle_core::Result<()> {
        let p = &mut self.list[id];
        assert!(p.trainable, "frozen parameter {} is never written", p.name);
        p.compute = t.to_dtype(self.dtype)?;
        p.master = Some(t);
        Ok(())
    }
}

/// Master copies and moments are f32 (f64 when the whole model computes in
/// f64, as the finite-difference tests do).
pub fn master_dtype(compute: DType) -> DType {
    match compute {
        DType::F64 => DType::F64,
        _ => DType::F32,
    }
}

/// Gradients of one step, summed over its micro-batches, in the master
/// dtype; only trainable parameters ever get one.
pub struct Grads {
    wants: Vec<bool>,
    sums: BTreeMap<ParamId, Tensor>,
    dtype: DType,
}

impl Grads {
    pub fn new(params: &Params) -> Self {
        Self {
            wants: (0..params.len()).map(|i| params.trainable(i)).collect(),
            sums: BTreeMap::new(),
            dtype: master_dtype(params.dtype()),
        }
    }

    /// Whether parameter `id` takes a gradient (so whether to compute it).
    pub fn wants(&self, id: ParamId) -> bool {
        self.wants[id]
    }

    /// Adds `g` to the gradient of `id` (ignored when `id` is frozen).
    pub fn add(&mut self, id: ParamId, g: Tensor) -> candle_core::Result<()> {
        if !self.wants[id] {
            return Ok(());
        }
        let g = g.to_dtype(self.dtype)?;
        let sum = match self.sums.remove(&id) {
            Some(acc) if inplace::in_place(&acc) => {
                inplace::add_assign(&acc, &g)?;
                acc
            }
            Some(acc) => (acc + g)?,
            // A copy: the sum is written in place later and `g` may share
            // its storage with a tensor still in use.
            None => g.copy()?,
        };
        self.sums.insert(id, sum);
        Ok(())
    }

    /// Adds `rows` [n, H] to the rows `ids` of the gradient of the
    /// embedding table `id` ([V, H]).
    pub fn add_rows(
        &mut self,
        id: ParamId,
        shape: &[usize],
        ids: &[u32],
        rows: &Tensor,
    ) -> candle_core::Result<()> {
        if !self.wants[id] || ids.is_empty() {
            return Ok(());
        }
        let rows = rows.to_dtype(self.dtype)?;
        let idx = Tensor::new(ids, rows.device())?;
        let acc = match self.sums.remove(&id) {
            Some(acc) => acc,
            None => Tensor::zeros(shape, self.dtype, rows.device())?,
        };
        let acc = match inplace::in_place(&acc) && inplace::in_place(&rows) {
            true => {
                inplace::index_add_rows(&acc, &idx, &rows)?;
                acc
            }
            false => acc.index_add(&idx, &rows, 0)?,
        };
        self.sums.insert(id, acc);
        Ok(())
    }

    pub fn get(&self, id: ParamId) -> Option<&Tensor> {
        self.sums.get(&id)
    }

    /// Every gradient, by parameter id.
    pub fn iter(&self) -> impl Iterator<Item = (ParamId, &Tensor)> {
        self.sums.iter().map(|(&i, t)| (i, t))
    }

    pub fn take(self) -> BTreeMap<ParamId, Tensor> {
        self.sums
    }
}
