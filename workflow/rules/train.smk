# train: one job per experiment; CUDA on GPU nodes (bf16 from sm80, else fp16), CPU elsewhere;
# torchrun (one rank per GPU, DDP) for gpus > 1. CPUs and memory scale with the GPUs asked for
# (config cluster.cpus_per_gpu, cluster.mem_mb_per_gpu; one node): docs/cluster.md, "GPUs".


rule train:
    input:
        shards=rules.shard.output[0],
        mean_source=mean_source_model,
    output:
        model=f"{FROOT}/models/{{experiment}}/model.pt",
        history=f"{FROOT}/models/{{experiment}}/history.csv",
    log:
        f"{FLOGS}/train/{{experiment}}.log",
    benchmark:
        f"{FBENCH}/train/{{experiment}}.tsv"
    threads: train_job_threads
    resources:
        **{key: train_resource(key) for key in train_job_resources(0, CLUSTER)},
        loader_workers=train_loader_workers(),
    params:
        settings=section_json("train"),
        experiment=experiment_json,
        code=fingerprint("modalmerge.stages.train"),
        out_dir=lambda wildcards, output: str(Path(output.model).parent),
        launcher=train_launcher,
    shell:
        "{params.launcher} train --settings {params.settings:q} --experiment {params.experiment:q}"
        " --shards {input.shards:q} --out-dir {params.out_dir:q} --threads {threads}"
        " --workers {resources.loader_workers:q} > {log:q} 2>&1"
