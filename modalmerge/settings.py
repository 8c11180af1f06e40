# Over 400 lines on purpose: the one definition of every config key (type, default, range, doc); one dataclass per section, side by side, is what the schema and the docs are generated from.
"""The typed settings of every workflow stage: the ONE definition of their keys and defaults.

One frozen dataclass per config section the stages read (``preprocess``,
``parcellate``, ``shard``, ``train``, ``evaluate``, ``figures``, ``cluster``)
plus one per ``experiments:`` entry and the ``dataset:`` header. Each field
carries its type, its default, its allowed values or range and a one-line doc;
``workflow/schemas/config.schema.yaml`` is generated from them
(``make schema``, :mod:`modalmerge.settings_schema`), so the package, the CLI
and the workflow apply the same defaults and refuse the same values.

Stdlib only (no numpy, torch or yaml): every stage module and every Snakemake
job imports it, and it must neither slow them down nor widen code fingerprints.

>>> from_dict("preprocess", {"high_pass": 0.01}).low_pass
0.15
>>> from_dict("preprocess", {"high_pass": 0})
Traceback (most recent call last):
ValueError: preprocess.high_pass: must be > 0 or null, got 0
"""

import dataclasses
from collections.abc import Mapping
from dataclasses import InitVar, dataclass, field

from modalmerge._settings_check import build, check_fields, field_spec
from modalmerge.modalities import MODALITIES  # the one list (models and shards check names with it)

__all__ = [
    "CONNECTIVITY_KINDS",
    "SECTIONS",
    "SOURCE_KINDS",
    "ClusterSettings",
    "DatasetSettings",
    "EvaluateSettings",
    "ExperimentSettings",
    "FiguresSettings",
    "Fractions",
    "ParcellateSettings",
    "PreprocessSettings",
    "ShardSettings",
    "TrainSettings",
    "VolumeSeriesSettings",
    "WorkflowSettings",
    "from_config",
    "from_dict",
    "to_dict",
]

F = field_spec  # field(default, doc, choices=, ge=, gt=, le=, ...): see _settings_check
#: per-subject connectivity kinds (tangent is group-level: the shard stage's)
CONNECTIVITY_KINDS = ("correlation", "partial correlation", "covariance", "precision")
#: learning-rate schedules: modalmerge.training.schedule.SCHEDULERS (a test keeps them equal;
#: that module imports torch, which this one must not)
SCHEDULERS = ("cosine", "onecycle", "constant")
#: dataset kinds: the keys of modalmerge.data.sources.SOURCES (a test keeps them equal)
SOURCE_KINDS = ("synthetic", "bids", "fmriprep", "hcp", "brats", "adni", "brainspace")
SOURCE_KINDS += ("brainspace_group",)


class _Section:
    """Shared behaviour: check every field after construction; build from a mapping."""

    SECTION = ""

    def __post_init__(self, path: str | None = None) -> None:
        check_fields(self, path or self.SECTION)

    @classmethod
    def from_dict(cls, mapping: Mapping | None, path: str | None = None):
        """Defaults filled in; an unknown key or a bad value is a ValueError naming its path."""
        return build(cls, mapping, path or cls.SECTION)

    @classmethod
    def coerce(cls, value):
        """``value`` itself when it is already this type, else :meth:`from_dict` of it."""
        return value if isinstance(value, cls) else cls.from_dict(value)


@dataclass(frozen=True)
class DatasetSettings(_Section):
    """``dataset:`` — which data the workflow runs on (its ``params`` belong to the source)."""

    SECTION = "dataset"
    name: str = F(doc="results/<name>/ holds this dataset's outputs", pattern=r"^[A-Za-z0-9_.-]+$")
    kind: str = F(
        doc="which source maps the data onto raw/ (brainspace_group: regions are the samples)",
        choices=SOURCE_KINDS,
    )
    params: dict = F(
        {}, doc="source parameters (synthetic: SyntheticParams fields; real: path, filters)"
    )
    path: InitVar[str | None] = None


@dataclass(frozen=True)
class PreprocessSettings(_Section):
    """``preprocess:`` — BOLD cleaning and anatomy normalisation on the atlas grid."""

    SECTION = "preprocess"
    detrend: bool = F(True, doc="remove a linear trend from each voxel's series")
    high_pass: float | None = F(0.008, doc="high-pass cut-off in Hz (null: none)", gt=0)
    low_pass: float | None = F(0.15, doc="low-pass cut-off in Hz (null: none)", gt=0)
    standardize: bool = F(True, doc="z-score each voxel's time series")
    normalize_anatomy: str = F(
        "robust_zscore",
        doc="T1 intensity normalisation inside the brain mask (bias_wm: divided by a smooth "
        "bias field fitted to the white matter and by the white-matter median)",
        choices=("robust_zscore", "median", "bias_wm", "none"),
    )
    min_overlap: float = F(
        0.8,
        doc="least fraction of the BOLD's brain inside the T1w's, and of the atlas inside the "
        "BOLD's, in world mm, before any processing (0: off; aligned data measure 0.98-1.0, a "
        "4 cm shift 0.54-0.69)",
        ge=0,
        le=1,
    )
    keep_intermediate: bool = F(
        False,
        doc="keep the preprocessed BOLD after parcellate has read it (default: a temp() output, "
        "deleted then; a later parcellate rerun then reruns preprocess first). Not part of "
        "the stage's identity: changing it reruns nothing",
        resource=True,
    )
    chunk_mb: int = F(
        256,
        doc="most MB (as float64) one chunk of a BOLD run holds while preprocess resamples, "
        "cleans and writes it, which bounds the stage's memory for long runs (a run that fits "
        "is processed whole). Not part of the stage's identity: changing it reruns nothing",
        ge=16,
        resource=True,
    )
    path: InitVar[str | None] = None

    def __post_init__(self, path: str | None = None) -> None:
        super().__post_init__(path)
        if self.high_pass and self.low_pass and self.high_pass >= self.low_pass:
            raise ValueError(
                f"{path or self.SECTION}.high_pass: must be below low_pass "
                f"({self.low_pass} Hz), got {self.high_pass}"
            )


@dataclass(frozen=True)
class ParcellateSettings(_Section):
    """``parcellate:`` — per-subject ROI series, connectivity and structural features."""

    SECTION = "parcellate"
    connectivity: str = F(
        "correlation",
        doc="per-subject connectivity (tangent is group-level: set shard.connectivity instead)",
        choices=CONNECTIVITY_KINDS,
        hint={"tangent": "tangent is a group-level measure: set shard.connectivity: tangent"},
    )
    tissue_threshold: float = F(
        0.0, doc="normalised T1 intensity above which a voxel counts as tissue"
    )
    path: InitVar[str | None] = None


@dataclass(frozen=True)
class Fractions(_Section):
    """``shard.fractions`` — share of the subjects (or of each run, or regions) per split."""

    SECTION = "shard.fractions"
    train: float = F(0.7, doc="training share", gt=0, le=1)
    val: float = F(0.15, doc="validation share", ge=0, le=1)
    test: float = F(0.15, doc="test share (> 0 in the workflow: evaluate scores it)", ge=0, le=1)
    path: InitVar[str | None] = None

    def __post_init__(self, path: str | None = None) -> None:
        super().__post_init__(path)
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"{path or self.SECTION}: must sum to 1, got {total:g}")

    def as_dict(self) -> dict[str, float]:
        return {"train": self.train, "val": self.val, "test": self.test}


@dataclass(frozen=True)
class VolumeSeriesSettings(_Section):
    """``shard.volume_series`` — windows of preprocessed BOLD volumes in the shards (4D)."""

    SECTION = "shard.volume_series"
    enabled: bool = F(
        False,
        doc="store each window's preprocessed BOLD volumes (samples/volume_series, the same "
        "windows as the ROI series) and, where the source has an events table, the task "
        "condition of each volume (samples/task_condition); the shard stage then reads the "
        "cleaned BOLD, kept until it has run",
    )
    downsample: int = F(2, doc="integer block-mean factor for the volumes (atlas grid)", ge=1)
    label_lag_s: float = F(
        5.0,
        doc="a volume's task condition is the event at its acquisition time minus this "
        "(s; the hemodynamic delay); no event there: rest",
        ge=0,
    )
    path: InitVar[str | None] = None


@dataclass(frozen=True)
class ShardSettings(_Section):
    """``shard:`` — splits, sliding windows and HDF5 shards (subject data and region data)."""

    SECTION = "shard"
    #: keys the subject shard stage reads, and those the region shard stage reads
    SUBJECT_KEYS = (
        "seed", "fractions", "window", "stride", "image_downsample", "subjects_per_shard",
        "split_by", "gap", "connectivity", "test_site", "harmonize", "tr",
        "volume_series",
    )  # fmt: skip
    #: keys that enter the subject record (manifest, config hash, rule params) only when
    #: set away from their default, so shards written before they existed keep their identity
    OMITTED_AT_DEFAULT = ("test_site", "harmonize", "tr", "volume_series")
    REGION_KEYS = (
        "seed", "fractions", "n_blocks", "buffer_mm", "hold_out_homologs", "subgraph_nodes",
    )  # fmt: skip
    seed: int = F(0, doc="seed of the subject (or block) draw", ge=0)
    fractions: Fractions = F(Fractions(), doc="share per split; must sum to 1")
    window: int = F(50, doc="volumes per sample", ge=2)
    stride: int = F(25, doc="volumes between window starts", ge=1)
    image_downsample: int = F(1, doc="integer block-mean factor for the subject image", ge=1)
    subjects_per_shard: int = F(64, doc="subjects per .h5 file", ge=1)
    split_by: str = F(
        "subject",
        doc="subject: whole subjects per split; time: every subject in every split, "
        "each split a block of the run (for one long run); site: the subjects of test_site "
        "are the test split, the other sites' subjects are drawn into train and val",
        choices=("subject", "time", "site"),
    )
    test_site: str | None = F(
        None,
        doc="split_by site: the held-out site (a value of participants.tsv's site column); "
        "all: every site in turn, one fold of the DAG each (results/<name>/loso/; "
        "modalmerge.folds)",
    )
    harmonize: str = F(
        "none",
        doc="combat: ComBat on structural features and connectivity, site as batch, the other "
        "participants columns kept as covariates, fitted on training subjects; ROI series "
        "z-scored per subject (modalmerge.data.harmonize); both (split_by site): every "
        "held-out site once with none and once with combat, one fold each",
        choices=("none", "combat", "both"),
    )
    gap: int | None = F(
        None, doc="split_by time: volumes left out between blocks (null: one window)", ge=0
    )
    tr: float | None = F(
        None,
        doc="common TR in seconds: every ROI series is resampled to it before windows are cut "
        "(sites with different TRs; modalmerge.data.resample), so window and stride count "
        "volumes of this TR; null: no resampling, every run must have the same TR",
        gt=0,
    )
    connectivity: str | None = F(
        None,
        doc="FC stored in the shards: null keeps parcellate's kind; tangent projects every "
        "subject at the training subjects' geometric mean",
        choices=("tangent",),
    )
    n_blocks: int = F(
        20, doc="region data only: spatial blocks (k-means of centroids) dealt to splits", ge=2
    )
    buffer_mm: float | None = F(
        None,
        doc="region data only: training regions this close to a held-out one are dropped "
        "(null: 2 x the median nearest-neighbour centroid distance; 0: none)",
        ge=0,
    )
    hold_out_homologs: bool = F(
        False,
        doc="region data only: a held-out region's homolog (the other hemisphere's region "
        "nearest its mirrored centroid) goes to the same split",
    )
    subgraph_nodes: int = F(
        0,
        doc="region data only: with N >= 3, each region of a split also gets its local "
        "sub-graph (itself and its N - 1 nearest regions of the same split, by centroid): "
        "graph views mpc (MPC sub-matrix with node features) and fc (FC sub-matrix) "
        "(modalmerge.data.shards.subgraphs); 0: none",
        ge=0,
    )
    volume_series: VolumeSeriesSettings = F(
        VolumeSeriesSettings(), doc="4D windows of BOLD volumes in the shards (off by default)"
    )
    path: InitVar[str | None] = None

    def subject_params(self) -> dict:
        """The keys the subject shard stage reads, as plain JSON values (rule params, manifest);
        the :data:`OMITTED_AT_DEFAULT` keys only when set."""
        defaults = {
            "test_site": None,
            "harmonize": "none",
            "tr": None,
            "volume_series": to_dict(VolumeSeriesSettings()),
        }
        return {
            k: v
            for k, v in to_dict(self).items()
            if k in self.SUBJECT_KEYS and not (k in self.OMITTED_AT_DEFAULT and v == defaults[k])
        }

    def __post_init__(self, path: str | None = None) -> None:
        super().__post_init__(path)
        if (self.split_by == "site") != (self.test_site is not None):
            raise ValueError(
                f"{path or self.SECTION}.test_site: set it exactly when split_by is site "
                f"(split_by {self.split_by!r}, test_site {self.test_site!r})"
            )
        if self.harmonize == "both" and self.split_by != "site":
            raise ValueError(
                f"{path or self.SECTION}.harmonize: both (one fold per harmonisation) needs "
                f"split_by site, got split_by {self.split_by!r}"
            )
        if self.volume_series.enabled and self.split_by == "time":
            raise ValueError(
                f"{path or self.SECTION}.volume_series: needs split_by subject or site (a run "
                "split in time is cleaned per block; its volumes are not stored)"
            )
        if self.volume_series.enabled and self.tr is not None:
            raise ValueError(
                f"{path or self.SECTION}.volume_series: the volumes are stored at their own TR, "
                f"so they cannot be windowed at shard.tr {self.tr} s; leave shard.tr unset"
            )

    def region_params(self) -> dict:
        """The keys the region shard stage reads, as plain JSON values (``subgraph_nodes``
        only when set, so region shards written before it existed keep their identity)."""
        return {
            k: v
            for k, v in to_dict(self).items()
            if k in self.REGION_KEYS and not (k == "subgraph_nodes" and v == 0)
        }


@dataclass(frozen=True)
class TrainSettings(_Section):
    """``train:`` — optimisation shared by every experiment (an experiment may override some)."""

    SECTION = "train"
    #: keys that enter the train rule's params (:func:`identity_dict`) only when set away from
    #: their default, so runs configured before they existed keep their identity (no rerun)
    IDENTITY_OMITTED_AT_DEFAULT = ("scheduler", "ensemble")
    seed: int = F(0, doc="torch seed (weights, shuffling)")
    epochs: int = F(40, doc="maximum epochs", ge=1)
    batch_size: int = F(16, doc="samples per batch", ge=1)
    lr: float = F(0.002, doc="peak AdamW learning rate", gt=0)
    scheduler: str = F(
        "cosine",
        doc="per-step learning-rate schedule: cosine (5 % linear warm-up, then cosine decay to "
        "1 % of lr), onecycle (torch OneCycleLR) or constant (lr throughout)",
        choices=SCHEDULERS,
    )
    weight_decay: float = F(0.01, doc="AdamW weight decay (matrices only)", ge=0)
    patience: int = F(8, doc="epochs without validation improvement before stopping", ge=1)
    ensemble: int = F(
        1,
        doc="models trained per experiment, member k with seed + k, one after another in the "
        "train job; evaluate and figures use their mean prediction and mean attention (not "
        "for diffusion models or text targets)",
        ge=1,
    )
    threads: int = F(1, doc="CPU threads per training job", ge=1, resource=True)
    num_workers: int | None = F(
        None,
        doc="data-loader worker processes per rank (0: read in the training process); null: "
        "derived from the job's CPUs (CUDA: all but one, CPU: 0). Batches are the same for "
        "any value",
        ge=0,
        resource=True,
    )
    path: InitVar[str | None] = None


@dataclass(frozen=True)
class ExperimentSettings(_Section):
    """One ``experiments:`` entry: condition -> target with an encoder, decoder and method."""

    SECTION = "experiments[]"
    #: keys that enter the rule params (:meth:`record`) only when set away from their default,
    #: so experiments configured before they existed keep their identity (no rerun)
    OMITTED_AT_DEFAULT = ("target_data", "scheduler", "ensemble")
    name: str = F(
        doc="outputs go to models/<name>/, eval/<name>/, figures/<name>/",
        pattern=r"^[A-Za-z0-9_.-]+$",
    )
    condition: str = F(doc="the conditioning modality", choices=MODALITIES)
    target: str = F(doc="the modality generated", choices=MODALITIES)
    encoder: str | None = F(None, doc="registered condition encoder (e.g. cnn, resnet18, lstm)")
    decoder: str | None = F(None, doc="registered target decoder (e.g. transformer, deconv, mlp)")
    method: str = F(
        "cross_attention",
        doc=(
            "conditioning method: cross_attention (multi-head cross-attention), spatial_mix "
            "(each target query mixes the condition tokens with learned weights that do not "
            "depend on the input, otherwise as cross_attention: the control for content-based "
            "attention), and the pooled methods film (feature-wise scale and shift from the "
            "pooled condition), adaln (adaptive layer norm: each target query normalised over "
            "its features, then scaled and shifted from the condition tokens' mean and SD; adain "
            "is an older name for the same method, not instance normalisation), concat (the "
            "pooled condition concatenated to every query), diffusion (a conditional denoising "
            "diffusion model whose denoiser reads the condition by cross-attention; decoder "
            "denoiser for time_series, diffusion_unet for image; evaluated from samples)"
        ),
        choices=("cross_attention", "spatial_mix", "film", "adaln", "adain", "concat", "diffusion"),
    )
    embedding_dim: int = F(64, doc="token width", ge=4)
    heads: int = F(4, doc="attention heads", ge=1)
    layers: int = F(1, doc="conditioning layers", ge=1)
    dropout: float = F(0.1, doc="dropout rate", ge=0, le=0.9)
    encoder_options: dict = F({}, doc="keyword options of the encoder")
    decoder_options: dict = F({}, doc="keyword options of the decoder")
    method_options: dict = F(
        {},
        doc="keyword options of the method (diffusion: train_steps, schedule, prediction, "
        "condition_dropout, sample_steps, guidance, n_ensemble, sample_seed, validation_seed, "
        "target_scale; residual (true: a deterministic mean head predicts the conditional "
        "mean and the diffusion models the residual), mean_weight, mean_decoder, "
        "mean_decoder_options, mean_loss (mse or target), detach_condition; mean_from (the "
        "name of an experiment whose trained encoder and deterministic head become the frozen "
        "mean head), mean_members (with mean_from: the size of that experiment's ensemble, "
        "whose members' mean is the mean head), whiten (with mean_from and a time-series "
        "target: the chain runs on "
        "residuals whitened by their Ledoit-Wolf ROI covariance), calibrate_spread (with "
        "residual: one scale for the residual draws, chosen on the validation subjects' "
        "CRPS after training), calibrate_mean (with calibrate_spread: a scale for the mean "
        "head's prediction too, chosen jointly))",
    )
    epochs: int | None = F(None, doc="overrides train.epochs", ge=1)
    lr: float | None = F(None, doc="overrides train.lr", gt=0)
    scheduler: str | None = F(None, doc="overrides train.scheduler", choices=SCHEDULERS)
    batch_size: int | None = F(None, doc="overrides train.batch_size", ge=1)
    ensemble: int | None = F(None, doc="overrides train.ensemble", ge=1)
    gpus: int = F(0, doc="GPUs asked for on a cluster (more than 1 launches torchrun)", ge=0)
    condition_rois: str | list | None = F(
        None, doc="time_series condition: ROIs (regex on names, or names/labels)", items=(str, int)
    )
    target_rois: str | list | None = F(
        None, doc="time_series target: ROIs, as condition_rois", items=(str, int)
    )
    condition_columns: str | list | None = F(
        None, doc="tabular condition: columns (regex on names, or names)", items=(str,)
    )
    target_columns: str | list | None = F(
        None, doc="tabular target: columns, as condition_columns", items=(str,)
    )
    condition_channels: str | list | None = F(
        None, doc="image condition: channels by name (T1w; BraTS adds T2w, FLAIR...)", items=(str,)
    )
    target_channels: str | list | None = F(
        None, doc="image target: channels by name, as condition_channels", items=(str,)
    )
    condition_graph: str | None = F(
        None,
        doc="graph condition: the view read, fc (connectivity, the default), sc (structural "
        "connectome, when the dataset has one) or mpc (region data with shard.subgraph_nodes: "
        "the microstructure profile covariance sub-graph)",
        choices=("fc", "sc", "mpc"),
    )
    target_graph: str | None = F(
        None, doc="graph target: the view read, as condition_graph", choices=("fc", "sc", "mpc")
    )
    target_data: str | None = F(
        None,
        doc="the shard data read as the target instead of the target modality's own: "
        "task_condition (target tabular, condition volume_series; each volume's task condition "
        "as a table of T categorical columns: brain decoding, scored against logistic "
        "regression on the ROI series and chance)",
        choices=("task_condition",),
    )
    plugins: tuple[str, ...] | None = F(
        None,
        doc="modules imported before the model is built or loaded (from the top-level plugins:)",
    )
    path: InitVar[str | None] = None

    def __post_init__(self, path: str | None = None) -> None:
        super().__post_init__(path)
        if self.target_data == "task_condition" and self.target != "tabular":
            raise ValueError(
                f"{path or self.SECTION}: target_data task_condition is read as a table "
                f"(target: tabular), not as {self.target!r}"
            )

    def record(self) -> dict:
        """:func:`to_dict` without the :data:`OMITTED_AT_DEFAULT` keys at their default (None):
        the experiment as the workflow's rule params."""
        return {
            k: v
            for k, v in to_dict(self).items()
            if not (k in self.OMITTED_AT_DEFAULT and v is None)
        }

    def training(self, train: TrainSettings) -> TrainSettings:
        """``train`` with this experiment's overrides (epochs, lr, scheduler, batch_size,
        ensemble) applied."""
        keys = ("epochs", "lr", "scheduler", "batch_size", "ensemble")
        overrides = {k: getattr(self, k) for k in keys}
        return dataclasses.replace(train, **{k: v for k, v in overrides.items() if v is not None})


@dataclass(frozen=True)
class EvaluateSettings(_Section):
    """``evaluate:`` — baselines the held-out scores are compared with."""

    SECTION = "evaluate"
    ridge_alphas: tuple[float, ...] = F(
        (0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0),
        doc="ridge penalties searched on validation data",
        gt=0,
    )
    pca_components: int = F(20, doc="PCA components of image voxels for the ridge baseline", ge=1)
    samples: int = F(
        16,
        doc="generative models (method diffusion): samples drawn per held-out window; their "
        "mean is the model's prediction, the samples are scored by CRPS, spread-skill, realism",
        ge=2,
    )
    sample_seed: int = F(0, doc="generative models: seed of the samples drawn", ge=0)
    time_units: int = F(
        1,
        doc="shard.split_by time only: contiguous, equally long units each run's test block is "
        "cut into, each scored as one held-out unit (a verdict needs >= 5 units in all)",
        ge=1,
    )
    in_memory_mb: float = F(
        32.0,
        doc="time-series targets (not generative): training windows (condition + target, MB as "
        "read, float32) up to which the baselines are fitted in memory; above it, by passes "
        "over the training shards, one subject at a time (the same fit to rounding); 0 always "
        "streams",
        ge=0,
    )
    path: InitVar[str | None] = None


@dataclass(frozen=True)
class FiguresSettings(_Section):
    """``figures:`` — drawing options."""

    SECTION = "figures"
    dpi: int = F(110, doc="resolution of the PNG figures", ge=30)
    n_rois: int = F(4, doc="ROIs drawn in the prediction figure", ge=1)
    path: InitVar[str | None] = None


@dataclass(frozen=True)
class ClusterSettings(_Section):
    """``cluster:`` — where the slurm profile sends jobs and how big they are."""

    SECTION = "cluster"
    partition: str = F("", doc="SLURM partition (empty: the cluster's default)")
    account: str = F("", doc="SLURM account (empty: none)")
    gpu_partition: str = F("", doc="partition of GPU jobs (empty: partition)")
    gpu_model: str = F("", doc="GPU model asked for (empty: any)")
    runtime_minutes: int = F(60, doc="runtime limit per job", ge=1)
    mem_mb: int = F(4000, doc="memory per job (MB)", ge=100)
    cpus_per_gpu: int = F(
        8,
        doc="CPUs per GPU of a train job (sbatch --cpus-per-gpu); each rank keeps 1, the rest "
        "are its data-loader workers",
        ge=1,
    )
    mem_mb_per_gpu: int = F(
        16000,
        doc="memory per GPU of a train job (MiB): sbatch --mem is gpus x this (at least mem_mb)",
        ge=100,
    )
    stage_mem_mb: dict = F(
        {},
        doc="base memory (MB) of a data stage's job by rule name (acquire_subject, preprocess, "
        "parcellate, shard, ...), replacing mem_mb for that rule; each job adds mem_per_input_mb "
        "x its input size and is multiplied by the retry attempt",
    )
    mem_per_input_mb: dict = F(
        {},
        doc="MB of memory per MB of input files, by rule name (unset: the stage's built-in "
        "estimate, modalmerge/stages/resources.py)",
    )
    subjects_per_job: int = F(
        1,
        doc="subjects one acquire / preprocess / parcellate job handles in one process "
        "(1: a job per subject); a batch reruns as a whole (docs/architecture.md)",
        ge=1,
        resource=True,
    )
    path: InitVar[str | None] = None


#: config section name -> its settings class (``experiments`` holds a list of entries)
SECTIONS: dict[str, type] = {
    "dataset": DatasetSettings,
    "preprocess": PreprocessSettings,
    "parcellate": ParcellateSettings,
    "shard": ShardSettings,
    "train": TrainSettings,
    "experiments": ExperimentSettings,
    "evaluate": EvaluateSettings,
    "figures": FiguresSettings,
    "cluster": ClusterSettings,
}
REQUIRED_SECTIONS = ("dataset", "experiments")


@dataclass(frozen=True)
class WorkflowSettings:
    """A whole config: every section typed, defaults filled (see :func:`from_config`)."""

    dataset: DatasetSettings
    experiments: tuple[ExperimentSettings, ...]
    preprocess: PreprocessSettings = field(default_factory=PreprocessSettings)
    parcellate: ParcellateSettings = field(default_factory=ParcellateSettings)
    shard: ShardSettings = field(default_factory=ShardSettings)
    train: TrainSettings = field(default_factory=TrainSettings)
    evaluate: EvaluateSettings = field(default_factory=EvaluateSettings)
    figures: FiguresSettings = field(default_factory=FiguresSettings)
    cluster: ClusterSettings = field(default_factory=ClusterSettings)
    plugins: tuple[str, ...] = ()
    repeats: int = 1


def from_dict(section: str, mapping: Mapping | None):
    """Typed settings of one config ``section`` (``experiments``: one entry) from a mapping.

    Missing keys take their defaults; an unknown key, a wrong type or an
    out-of-range value is a ValueError naming the key path.
    """
    if section not in SECTIONS:
        raise ValueError(f"{section}: unknown config section; known: {', '.join(SECTIONS)}")
    cls = SECTIONS[section]
    return cls.from_dict(mapping, "experiments[]" if section == "experiments" else section)


def from_config(config: Mapping) -> WorkflowSettings:
    """Every section of a whole config, typed; the first bad key raises ValueError naming it.

    The Snakefile calls this before the schema validation, so a value the
    stages would refuse stops ``snakemake -n`` before any job runs, with a
    message naming its key (``preprocess.high_pass: must be > 0 or null, got 0``).
    """
    unknown = sorted(set(config) - set(SECTIONS) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise ValueError(f"{unknown[0]}: unknown config section; known: {', '.join(SECTIONS)}")
    for name in REQUIRED_SECTIONS:
        if name not in config:
            raise ValueError(f"{name}: required")
    entries = config["experiments"]
    if not isinstance(entries, list | tuple) or not entries:
        raise ValueError("experiments: must be a non-empty list")
    experiments = tuple(
        ExperimentSettings.from_dict(e, f"experiments[{i}]") for i, e in enumerate(entries)
    )
    plugins = _plugins(config.get("plugins"))
    if plugins:  # every stage that builds or loads a model imports them first
        experiments = tuple(dataclasses.replace(e, plugins=plugins) for e in experiments)
    names = [e.name for e in experiments]
    if len(set(names)) != len(names):
        raise ValueError(f"experiments: names must be unique, got {names}")
    sections = {
        name: from_dict(name, config.get(name)) for name in SECTIONS if name != "experiments"
    }
    if sections["shard"].fractions.test == 0:  # the package may write shards without a test split
        raise ValueError("shard.fractions.test: must be > 0 (the evaluate stage scores it), got 0")
    repeats = _repeats(config.get("repeats", 1))
    _check_ensembles(experiments, sections["train"])
    return WorkflowSettings(experiments=experiments, plugins=plugins, repeats=repeats, **sections)


PLUGINS_DOC = (
    "importable Python modules that register encoders, decoders or conditioning methods "
    "(modalmerge.models.register_encoder, ...); train, evaluate and figures import them before "
    "building or loading a model, so an experiment can name their blocks. Editing a plugin's "
    "code does not rerun anything by itself (use --forcerun train)"
)


REPEATS_DOC = (
    "independent repeats of the whole DAG, each its own branch: repeat k uses dataset.params.seed "
    "+ k (synthetic sources: a new cohort), shard.seed + k and train.seed + k (real data: only "
    "the split and training seeds change). Repeat 0 is the run of repeats: 1, in results/<name>/; "
    "repeat k >= 1 goes to results/<name>/rep-<k>/; eval/summary_repeats.csv aggregates them"
)
#: top-level keys that are not sections (each checked by its own function below)
TOP_LEVEL_KEYS = ("plugins", "repeats")


def ensemble_refusal(method: str, target: str) -> str | None:
    """Why a model of ``method`` -> ``target`` cannot be ensembled (None: it can)."""
    if method == "diffusion":
        return "a diffusion model is scored from its samples, not from a mean prediction"
    if target == "text":
        return "a text target is decoded greedily from its own words, not averaged"
    return None


def _check_ensembles(experiments, train) -> None:
    """An ensemble (``train.ensemble`` or an experiment's ``ensemble`` above 1) only of
    deterministic, non-text models; a ``mean_from`` source's ensemble size is the diffusion
    experiment's ``method_options.mean_members`` (1 when absent)."""
    sizes = {e.name: e.training(train).ensemble for e in experiments}
    for i, e in enumerate(experiments):
        refusal = ensemble_refusal(e.method, e.target) if sizes[e.name] > 1 else None
        if refusal is not None:
            raise ValueError(
                f"experiments[{i}] ({e.name}): ensemble {sizes[e.name]} (train.ensemble or the "
                f"experiment's ensemble): {refusal}; set its ensemble: 1"
            )
        source = e.method_options.get("mean_from") if e.method == "diffusion" else None
        members = e.method_options.get("mean_members", 1) if source is not None else 1
        if source in sizes and sizes[source] != members:
            raise ValueError(
                f"experiments[{i}].method_options.mean_members ({e.name}): {members}, but "
                f"mean_from {source!r} trains an ensemble of {sizes[source]} (train.ensemble "
                f"or its ensemble); set mean_members: {sizes[source]}"
            )


def _repeats(value) -> int:
    """The top-level ``repeats:`` (an int >= 1; 1 when absent), checked."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"repeats: must be an integer >= 1, got {value!r}")
    return value


def _plugins(value) -> tuple[str, ...]:
    """The top-level ``plugins:`` list (module names), checked."""
    if value is None:
        return ()
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"plugins: must be a list of module names, got {value!r}")
    return tuple(value)


def identity_dict(settings) -> dict:
    """:func:`to_dict` without the resource knobs (fields marked ``resource=True``: threads,
    workers, memory): what a stage computes, the workflow's rerun identity of a section.
    A section's ``IDENTITY_OMITTED_AT_DEFAULT`` keys are left out while at their default, so
    adding such a key reruns nothing configured before it."""
    plain = to_dict(settings)
    omitted = getattr(settings, "IDENTITY_OMITTED_AT_DEFAULT", ())
    for f in dataclasses.fields(settings):
        at_default = f.name in omitted and getattr(settings, f.name) == f.default
        if f.metadata.get("resource") or at_default:
            plain.pop(f.name, None)
    return plain


def to_dict(settings) -> dict:
    """Plain JSON-ready values of a settings object (tuples as lists, nested as dicts)."""

    def plain(value):
        if isinstance(value, _Section):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, tuple | list):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(settings)
