"""Chinese strings of the code-sandbox badge (shown on the Evaluate and Agents pages)."""

ZH = {
    "Code sandbox: checking…": "代码沙箱：检测中…",
    "Code sandbox: own network, file and process namespaces": "代码沙箱：独立的网络、文件与进程命名空间",
    "Code sandbox: seccomp network filter and a Python audit hook (weaker: the kernel refuses namespaces)":
        "代码沙箱：seccomp 网络过滤加 Python 审计钩子（较弱：内核不允许命名空间）",
    "Code sandbox: a Python audit hook only (weak: the kernel refuses namespaces and seccomp)":
        "代码沙箱：仅 Python 审计钩子（弱：内核不允许命名空间和 seccomp）",
}
