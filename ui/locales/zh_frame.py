"""Chinese strings of the shared frame and navigation."""

ZH = {
    "Inkstone": "墨砚",
    "Home": "首页",
    "Models": "模型",
    "Jobs": "任务",
    "Telemetry": "监控",
    "Settings": "设置",
    "Dark mode": "深色模式",
    "Language": "语言",
    "Access token": "访问令牌",
    "Enter the access token to continue.": "请输入访问令牌以继续。",
    "Sign in": "登录",
    "Wrong token.": "令牌错误。",
}
