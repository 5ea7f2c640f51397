"""Chinese strings of the Telemetry page and the telemetry charts (also shown on the Jobs page)."""

ZH = {
    "Waiting for the first sample…": "正在等待第一个采样…",
    "CPU": "CPU",
    "RAM used": "已用内存",
    "of {total}": "共 {total}",
    "Disk used (data dir)": "已用磁盘（数据目录）",
    "GPU {i}": "GPU {i}",
    "As of {time}": "更新于 {time}",
    "No NVIDIA GPU found: showing CPU, RAM and disk only.": "未找到 NVIDIA GPU：仅显示 CPU、内存和磁盘。",
    "10 min": "10 分钟",
    "1 h": "1 小时",
    "24 h": "24 小时",
    "No telemetry was recorded in this span.": "这段时间内没有监控记录。",
    "GPU utilization": "GPU 利用率",
    "GPU memory used": "已用显存",
    "GPU temperature": "GPU 温度",
    "GPU power": "GPU 功耗",
}
