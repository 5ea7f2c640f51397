"""Chinese strings of the Jobs pages and the shared job widgets (status, progress, actions, job table)."""

ZH = {
    # job states
    "Queued": "排队中",
    "Waiting for a GPU": "等待 GPU",
    "Running": "运行中",
    "Succeeded": "已完成",
    "Failed": "失败",
    "Cancelled": "已取消",
    "Interrupted": "已中断",
    # job kinds' titles, as stored on job rows
    "Self-test: load and generate": "自检：加载并生成",
    "Import model": "导入模型",
    "Set up the bundled model": "安装内置模型",
    # widgets
    "ETA {eta}": "预计剩余 {eta}",
    "Cancel": "取消",
    "Retry": "重试",
    "Job #{id} cancelled": "任务 #{id} 已取消",
    "Asked job #{id} to stop": "已请求任务 #{id} 停止",
    "Could not retry: {error}": "无法重试：{error}",
    "Retrying as job #{id}": "已作为任务 #{id} 重试",
    "step": "步数",
    # job table
    "ID": "编号",
    "Job": "任务",
    "Status": "状态",
    "Progress": "进度",
    "Created": "创建时间",
    "Duration": "耗时",
    "Message": "消息",
    "No jobs yet.": "还没有任务。",
    # list page
    "All kinds": "全部类型",
    "Kind": "类型",
    "The latest {n} jobs, updated every second.": "最近 {n} 个任务，每秒更新。",
    # detail page
    "There is no job with id {id}.": "没有编号为 {id} 的任务。",
    "Back to all jobs": "返回任务列表",
    "Created {created} · started {started} · finished {finished} · took {took}":
        "创建于 {created} · 开始于 {started} · 结束于 {finished} · 耗时 {took}",
    "Lineage": "来源与去向",
    "Model: {name}": "模型：{name}",
    "Dataset: {name}": "数据集：{name}",
    "Retry of job #{id}": "重试自任务 #{id}",
    "Retried as job #{id}": "已重试为任务 #{id}",
    "Produced model: {name}": "产出模型：{name}",
    "No linked models, datasets or jobs.": "没有关联的模型、数据集或任务。",
    "Error": "错误",
    "Arguments": "参数",
    "Result": "结果",
    "Machine during this job": "任务期间的机器状态",
    "Telemetry appears once the job starts.": "任务开始后显示监控数据。",
    "Metrics": "指标",
    "No metrics recorded yet.": "尚未记录指标。",
    "Log": "日志",
}
