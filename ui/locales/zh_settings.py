"""Chinese strings of the Settings page, including the Settings field descriptions it uses as labels."""

ZH = {
    "Address the web app binds to": "Web 应用绑定的地址",
    "Port of the web app": "Web 应用的端口",
    "Required for every page and API call when set": "设置后，每个页面和 API 调用都需要它",
    "UI language": "界面语言",
    "Dark UI theme": "深色界面主题",
    "Seconds between telemetry samples": "监控采样间隔（秒）",
    "Hours of full-rate telemetry": "保留全速率监控数据的小时数",
    "GPU jobs that may share one GPU": "可共用一块 GPU 的 GPU 任务数",
    "Seconds a cancelled job gets to stop": "取消任务后留给它停止的秒数",
    "Enter a number": "请输入数字",
    "Enter a whole number": "请输入整数",
    "Must be between {lo} and {hi}": "必须在 {lo} 到 {hi} 之间",
    "Enter an address, e.g. 127.0.0.1": "请输入地址，例如 127.0.0.1",
    "Set an access token first: on {host} anyone on the network could use Inkstone.":
        "请先设置访问令牌：在 {host} 上，网络中的任何人都能使用墨砚。",
    "At least 8 characters": "至少 8 个字符",
    "Fix the marked fields first.": "请先修正标出的字段。",
    "Settings saved.": "设置已保存。",
    "Host, port, access token and telemetry interval apply at the next launch.":
        "主机、端口、访问令牌和监控采样间隔将在下次启动时生效。",
    "Reload the page to see the new language and theme": "重新加载页面以应用新的语言和主题",
    "Data dir: {path}": "数据目录：{path}",
    "Appearance": "外观",
    "Language and theme change when the page reloads.": "语言和主题在页面重新加载后生效。",
    "Web server": "Web 服务器",
    "Host, port and access token apply at the next launch.": "主机、端口和访问令牌将在下次启动时生效。",
    "The interval applies at the next launch. Past the full-rate hours, samples are thinned to one per minute "
    "and deleted after 30 days.": "采样间隔在下次启动时生效。超过全速率保留时长的采样会精简为每分钟一个，30 天后删除。",
    "These apply to the next job that starts.": "这些设置对下一个启动的任务生效。",
    "Save": "保存",
}
