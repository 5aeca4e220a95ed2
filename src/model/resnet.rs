//! ResNet-18/34 (BasicBlock) with torchvision's structure and key names,
//! split into named stages so training can freeze a prefix and Grad-CAM can
//! tap any stage. BatchNorm runs per stage in eval mode (running statistics)
//! or train mode (batch statistics, running statistics updated as PyTorch).
//!
//! Parameters are plain tensors: a tensor that is not backed by a `Var` is a
//! constant to autograd, so frozen stages cost no gradient work. Making a
//! stage trainable swaps its tensors for `Var`-backed ones.

use candle_core::{D, DType, Device, Module, Result, Tensor, Var};

use super::conv;

/// The stages of the network, in order. `Head` is global average pooling + fc.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    Stem,
    Layer1,
    Layer2,
    Layer3,
    Layer4,
    Head,
}

impl Stage {
    /// All stages in forward order.
    pub const ALL: [Stage; 6] = [
        Stage::Stem,
        Stage::Layer1,
        Stage::Layer2,
        Stage::Layer3,
        Stage::Layer4,
        Stage::Head,
    ];

    /// The configuration and key-prefix name ("layer4", "fc", "stem").
    pub fn name(self) -> &'static str {
        match self {
            Stage::Stem => "stem",
            Stage::Layer1 => "layer1",
            Stage::Layer2 => "layer2",
            Stage::Layer3 => "layer3",
            Stage::Layer4 => "layer4",
            Stage::Head => "fc",
        }
    }

    /// Parse a configuration name.
    pub fn from_name(name: &str) -> Option<Stage> {
        Stage::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The stage a parameter key belongs to (`layer2.0.bn1.weight` → Layer2).
    pub fn of_key(key: &str) -> Stage {
        let head = key.split('.').next().unwrap_or("");
        match head {
            "layer1" => Stage::Layer1,
            "layer2" => Stage::Layer2,
            "layer3" => Stage::Layer3,
            "layer4" => Stage::Layer4,
            "fc" => Stage::Head,
            _ => Stage::Stem,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Which stages run BatchNorm in train mode, as a set of stages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BnTrain(u8);

impl BnTrain {
    /// Every stage in eval mode (inference, Grad-CAM, frozen prefixes).
    pub const EVAL: BnTrain = BnTrain(0);
    /// Every stage in train mode (the notebook's `model.train()`).
    pub const ALL: BnTrain = BnTrain(0x3f);

    /// Train mode for exactly these stages.
    pub fn stages(stages: &[Stage]) -> BnTrain {
        BnTrain(stages.iter().fold(0, |m, s| m | (1 << s.index())))
    }

    pub fn contains(self, s: Stage) -> bool {
        self.0 & (1 << s.index()) != 0
    }
}

/// Architecture variants (BasicBlock counts per layer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    ResNet18,
    ResNet34,
}

impl Arch {
    pub fn blocks(self) -> [usize; 4] {
        match self {
            Arch::ResNet18 => [2, 2, 2, 2],
            Arch::ResNet34 => [3, 4, 6, 3],
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Arch::ResNet18 => "resnet18",
            Arch::ResNet34 => "resnet34",
        }
    }

    pub fn from_name(name: &str) -> Option<Arch> {
        match name {
            "resnet18" => Some(Arch::ResNet18),
            "resnet34" => Some(Arch::ResNet34),
            _ => None,
        }
    }
}

/// Which code runs the network's convolutions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConvPath {
    /// Candle's conv2d, with BatchNorm and ReLU as separate operations: the
    /// reference the fast path is measured and tested against.
    Stock,
    /// Eval-mode BatchNorm folded into the convolution; on the CPU,
    /// flowercam's own kernels (`model::conv`), elsewhere Candle's conv2d.
    #[default]
    Fast,
}

impl ConvPath {
    /// Parse the `model.conv` config value.
    pub fn from_name(name: &str) -> Option<ConvPath> {
        match name {
            "fast" => Some(ConvPath::Fast),
            "stock" => Some(ConvPath::Stock),
            _ => None,
        }
    }

    /// The config name, for messages and benchmarks.
    pub fn name(self) -> &'static str {
        match self {
            ConvPath::Fast => "fast",
            ConvPath::Stock => "stock",
        }
    }
}

/// A bias-free convolution, as every ResNet convolution is.
#[derive(Debug, Clone)]
pub struct Conv {
    pub weight: Tensor,
    pub stride: usize,
    pub padding: usize,
}

impl Conv {
    /// The convolution followed by its BatchNorm (and ReLU when `relu`).
    fn with_bn(&self, bn: &BatchNorm, x: &Tensor, train: bool, relu: bool, path: ConvPath) -> Result<Tensor> {
        let y = match (path, train) {
            (ConvPath::Stock, _) => bn.forward(&x.conv2d(&self.weight, self.padding, self.stride, 1, 1)?, train)?,
            (ConvPath::Fast, false) => {
                let (w, b) = conv::fold_batchnorm(
                    &self.weight,
                    &bn.weight,
                    &bn.bias,
                    &bn.running_mean.as_tensor().detach(),
                    &bn.running_var.as_tensor().detach(),
                    bn.eps,
                )?;
                return conv::conv2d(x, &w, Some(&b), self.stride, self.padding, relu);
            }
            (ConvPath::Fast, true) => {
                let y = conv::conv2d(x, &self.weight, None, self.stride, self.padding, false)?;
                return bn.forward_train_fused(&y, relu);
            }
        };
        if relu { y.relu() } else { Ok(y) }
    }
}

/// BatchNorm2d with PyTorch's semantics: normalise with the biased batch
/// variance in train mode, update running statistics with momentum 0.1 and
/// the unbiased variance.
#[derive(Debug, Clone)]
pub struct BatchNorm {
    pub weight: Tensor,
    pub bias: Tensor,
    /// Vars only for in-place updates; never handed to an optimizer.
    pub running_mean: Var,
    pub running_var: Var,
    pub eps: f64,
    pub momentum: f64,
}

impl BatchNorm {
    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let c = self.weight.dim(0)?;
        let shape = (1, c, 1, 1);
        if !train {
            let (scale, shift) = conv::batchnorm_affine(
                &self.weight,
                &self.bias,
                &self.running_mean.as_tensor().detach(),
                &self.running_var.as_tensor().detach(),
                self.eps,
            )?;
            return x
                .broadcast_mul(&scale.reshape(shape)?)?
                .broadcast_add(&shift.reshape(shape)?);
        }
        let (n, _, h, w) = x.dims4()?;
        let count = (n * h * w) as f64;
        let mean = x.mean_keepdim(D::Minus1)?.mean_keepdim(D::Minus2)?.mean_keepdim(0)?;
        let centred = x.broadcast_sub(&mean)?;
        let var = centred
            .sqr()?
            .mean_keepdim(D::Minus1)?
            .mean_keepdim(D::Minus2)?
            .mean_keepdim(0)?;
        let normed = centred.broadcast_div(&(var.clone() + self.eps)?.sqrt()?)?;
        let y = normed
            .broadcast_mul(&self.weight.reshape(shape)?)?
            .broadcast_add(&self.bias.reshape(shape)?)?;
        self.update_running(&mean.flatten_all()?, &var.flatten_all()?, count)?;
        Ok(y)
    }

    /// Train mode as one fused operation (ReLU included when `relu`) where
    /// the tensors allow it, else [`BatchNorm::forward`]; same results to
    /// float rounding.
    fn forward_train_fused(&self, x: &Tensor, relu: bool) -> Result<Tensor> {
        let Some((y, mean, var)) = conv::batch_norm_train(x, &self.weight, &self.bias, self.eps, relu)? else {
            let y = self.forward(x, true)?;
            return if relu { y.relu() } else { Ok(y) };
        };
        let (n, _, h, w) = x.dims4()?;
        self.update_running(&mean, &var, (n * h * w) as f64)?;
        Ok(y)
    }

    /// PyTorch's running update from a batch's mean and biased variance over
    /// `count` values per channel: momentum 0.1, unbiased variance.
    fn update_running(&self, mean: &Tensor, biased_var: &Tensor, count: f64) -> Result<()> {
        let m = self.momentum;
        let unbiased = (biased_var.detach() * (count / (count - 1.0).max(1.0)))?;
        let new_mean = ((self.running_mean.as_tensor().detach() * (1.0 - m))? + (mean.detach() * m)?)?;
        let new_var = ((self.running_var.as_tensor().detach() * (1.0 - m))? + (unbiased * m)?)?;
        self.running_mean.set(&new_mean)?;
        self.running_var.set(&new_var)
    }
}

/// torchvision's BasicBlock: two 3×3 convolutions and a shortcut.
#[derive(Debug, Clone)]
pub struct BasicBlock {
    pub conv1: Conv,
    pub bn1: BatchNorm,
    pub conv2: Conv,
    pub bn2: BatchNorm,
    pub downsample: Option<(Conv, BatchNorm)>,
}

impl BasicBlock {
    fn forward(&self, x: &Tensor, train: bool, path: ConvPath) -> Result<Tensor> {
        let y = self.conv1.with_bn(&self.bn1, x, train, true, path)?;
        let y = self.conv2.with_bn(&self.bn2, &y, train, false, path)?;
        let shortcut = match &self.downsample {
            Some((conv, bn)) => conv.with_bn(bn, x, train, false, path)?,
            None => x.clone(),
        };
        match path {
            ConvPath::Stock => (y + shortcut)?.relu(),
            ConvPath::Fast => conv::add_relu(&y, &shortcut),
        }
    }
}

/// The classifier head.
#[derive(Debug, Clone)]
pub struct Linear {
    pub weight: Tensor,
    pub bias: Tensor,
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.matmul(&self.weight.t()?)?.broadcast_add(&self.bias)
    }
}

/// A ResNet with named stages.
#[derive(Debug, Clone)]
pub struct ResNet {
    pub arch: Arch,
    pub conv1: Conv,
    pub bn1: BatchNorm,
    pub layers: [Vec<BasicBlock>; 4],
    pub fc: Linear,
    /// Stock or fast convolutions (benchmarks compare the two).
    pub conv_path: ConvPath,
}

/// Channel width of each layer.
pub const WIDTHS: [usize; 4] = [64, 128, 256, 512];

impl ResNet {
    /// Number of classes the head predicts.
    pub fn num_classes(&self) -> usize {
        self.fc.weight.dims()[0]
    }

    pub fn device(&self) -> &Device {
        self.conv1.weight.device()
    }

    /// Run one stage.
    pub fn forward_stage(&self, stage: Stage, x: &Tensor, bn: BnTrain) -> Result<Tensor> {
        let train = bn.contains(stage);
        match stage {
            Stage::Stem => {
                let y = self.conv1.with_bn(&self.bn1, x, train, true, self.conv_path)?;
                match self.conv_path {
                    ConvPath::Fast => conv::max_pool_3x3_s2(&y),
                    ConvPath::Stock => conv::padded_max_pool_3x3_s2(&y),
                }
            }
            Stage::Head => self.fc.forward(&x.mean(D::Minus1)?.mean(D::Minus1)?),
            layer => {
                let blocks = &self.layers[layer.index() - 1];
                blocks
                    .iter()
                    .try_fold(x.clone(), |x, b| b.forward(&x, train, self.conv_path))
            }
        }
    }

    /// Run stages `from..=to` in order.
    pub fn forward_range(&self, x: &Tensor, from: Stage, to: Stage, bn: BnTrain) -> Result<Tensor> {
        Stage::ALL
            .into_iter()
            .filter(|s| (from..=to).contains(s))
            .try_fold(x.clone(), |x, s| self.forward_stage(s, &x, bn))
    }

    /// Logits in eval mode.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_range(x, Stage::Stem, Stage::Head, BnTrain::EVAL)
    }

    /// Every learnable tensor and BatchNorm statistic with its torchvision key,
    /// in a fixed order. Mutable so stages can be made trainable in place.
    pub fn named_tensors_mut(&mut self) -> Vec<(String, &mut Tensor)> {
        let mut out: Vec<(String, &mut Tensor)> = Vec::new();
        out.push(("conv1.weight".into(), &mut self.conv1.weight));
        push_bn(&mut out, "bn1", &mut self.bn1);
        for (li, layer) in self.layers.iter_mut().enumerate() {
            for (bi, block) in layer.iter_mut().enumerate() {
                let p = format!("layer{}.{bi}", li + 1);
                out.push((format!("{p}.conv1.weight"), &mut block.conv1.weight));
                push_bn(&mut out, &format!("{p}.bn1"), &mut block.bn1);
                out.push((format!("{p}.conv2.weight"), &mut block.conv2.weight));
                push_bn(&mut out, &format!("{p}.bn2"), &mut block.bn2);
                if let Some((conv, bn)) = block.downsample.as_mut() {
                    out.push((format!("{p}.downsample.0.weight"), &mut conv.weight));
                    push_bn(&mut out, &format!("{p}.downsample.1"), bn);
                }
            }
        }
        out.push(("fc.weight".into(), &mut self.fc.weight));
        out.push(("fc.bias".into(), &mut self.fc.bias));
        out
    }

    /// Every BatchNorm with its key prefix.
    pub fn batchnorms(&self) -> Vec<(String, &BatchNorm)> {
        let mut out = vec![("bn1".to_string(), &self.bn1)];
        for (li, layer) in self.layers.iter().enumerate() {
            for (bi, block) in layer.iter().enumerate() {
                let p = format!("layer{}.{bi}", li + 1);
                out.push((format!("{p}.bn1"), &block.bn1));
                out.push((format!("{p}.bn2"), &block.bn2));
                if let Some((_, bn)) = &block.downsample {
                    out.push((format!("{p}.downsample.1"), bn));
                }
            }
        }
        out
    }

    /// The full state dict (parameters and running statistics), torchvision keys.
    pub fn state_dict(&mut self) -> Vec<(String, Tensor)> {
        let mut out: Vec<(String, Tensor)> = self
            .named_tensors_mut()
            .into_iter()
            .map(|(k, t)| (k, t.detach()))
            .collect();
        for (prefix, bn) in self.batchnorms() {
            out.push((format!("{prefix}.running_mean"), bn.running_mean.as_tensor().detach()));
            out.push((format!("{prefix}.running_var"), bn.running_var.as_tensor().detach()));
        }
        out
    }

    /// Make the given stages learnable: their weights become `Var`s, which
    /// are returned by stage for the optimizer groups.
    pub fn make_trainable(&mut self, stages: &[Stage]) -> Result<Vec<(Stage, Vec<Var>)>> {
        let mut groups: Vec<(Stage, Vec<Var>)> = stages.iter().map(|s| (*s, Vec::new())).collect();
        for (key, tensor) in self.named_tensors_mut() {
            let stage = Stage::of_key(&key);
            if let Some((_, vars)) = groups.iter_mut().find(|(s, _)| *s == stage) {
                let var = Var::from_tensor(tensor)?;
                *tensor = var.as_tensor().clone();
                vars.push(var);
            }
        }
        Ok(groups)
    }

    /// An independent copy: the weights are immutable tensors and can be
    /// shared, but BatchNorm running statistics are updated in place in train
    /// mode, so they get their own storage.
    pub fn fresh_copy(&self) -> Result<ResNet> {
        let mut copy = self.clone();
        let fresh = |bn: &mut BatchNorm| -> Result<()> {
            bn.running_mean = Var::from_tensor(&bn.running_mean.as_tensor().copy()?)?;
            bn.running_var = Var::from_tensor(&bn.running_var.as_tensor().copy()?)?;
            Ok(())
        };
        fresh(&mut copy.bn1)?;
        for block in copy.layers.iter_mut().flatten() {
            fresh(&mut block.bn1)?;
            fresh(&mut block.bn2)?;
            if let Some((_, bn)) = block.downsample.as_mut() {
                fresh(bn)?;
            }
        }
        Ok(copy)
    }

    /// Replace the head with a freshly initialised `Linear(512, n)`.
    pub fn replace_head(&mut self, n: usize, rng_seed: u64) -> Result<()> {
        let in_features = self.fc.weight.dims()[1];
        let dev = self.device().clone();
        self.fc = super::weights::init_linear(in_features, n, rng_seed, &dev)?;
        Ok(())
    }
}

fn push_bn<'a>(out: &mut Vec<(String, &'a mut Tensor)>, prefix: &str, bn: &'a mut BatchNorm) {
    out.push((format!("{prefix}.weight"), &mut bn.weight));
    out.push((format!("{prefix}.bias"), &mut bn.bias));
}

/// Cross-entropy of logits against integer labels (mean over the batch).
pub fn cross_entropy(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    candle_nn::loss::cross_entropy(logits, labels)
}

/// Check a tensor is f32, converting half precision weights.
pub fn to_f32(t: Tensor) -> Result<Tensor> {
    if t.dtype() == DType::F32 {
        Ok(t)
    } else {
        t.to_dtype(DType::F32)
    }
}
