"""Chinese strings of the Home page."""

ZH = {
    "What is here": "概览",
    "Run self-test": "运行自检",
    "Datasets": "数据集",
    "Jobs by status": "各状态任务数",
    "{label}: {n}": "{label}：{n}",
    "Recent jobs": "最近的任务",
    "This machine": "本机",
    "CPU: {logical} threads ({physical} cores)": "CPU：{logical} 线程（{physical} 核）",
    "Memory: {ram}": "内存：{ram}",
    "Free disk in the data dir: {free}": "数据目录可用磁盘：{free}",
    "GPU {index}: {name}, {mem}": "GPU {index}：{name}，{mem}",
    "No NVIDIA GPU found": "未发现 NVIDIA GPU",
    "No model is registered yet: set up the bundled model on the Models page first.":
        "还没有注册模型：请先在“模型”页面安装内置模型。",
    "Could not start the self-test: {error}": "无法启动自检：{error}",
}
