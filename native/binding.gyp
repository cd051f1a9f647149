{
  "targets": [
    {
      "target_name": "urbd_native",
      "sources": [
        "src/addon.cc",
        "src/args.cc",
        "src/errno_error.cc",
        "src/sync_ops.cc",
        "src/async_ops.cc",
        "src/fast_io.cc",
        "src/notify.cc",
        "src/huge_alloc.cc"
      ],
      "include_dirs": ["<!@(node -p \"require('node-addon-api').include\")"],
      "defines": ["NAPI_DISABLE_CPP_EXCEPTIONS", "NAPI_VERSION=8", "_GNU_SOURCE"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra"],
      "cflags_cc!": ["-std=gnu++17", "-std=gnu++20"]
    }
  ]
}
