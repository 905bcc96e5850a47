"""Inputs for the parser tests.

Real captures are read from tests/fixtures/real-outputs/ (each with its NAME.source.txt note).
Every other text in this module was WRITTEN FROM THE FORMAT, NOT CAPTURED: it follows the layout
the tool prints (AOSP dumpsys services, the Linux power_supply and cpufreq sysfs ABI, the Pixel
ODPM driver's energy_value/enabled_rails show functions, tegrastats, vcgencmd), with made-up numbers.
"""

from __future__ import annotations

from pathlib import Path

REAL = Path(__file__).resolve().parents[1] / "fixtures" / "real-outputs"


def real(name: str) -> str:
    """A real capture, e.g. ``real("tegrastats/orin_nano_8gb_jp6_two_captures.txt")``."""
    return (REAL / name).read_text(encoding="utf-8")


def crlf(text: str) -> str:
    return text.replace("\n", "\r\n")


def logcat(text: str, style: str = "threadtime", tag: str = "tflite") -> str:
    """Every line of ``text`` with a logcat prefix of ``style`` (threadtime, tag, brief)."""
    prefix = {
        "threadtime": f"01-02 03:04:05.678  1234  1234 I {tag}  : ",
        "tag": f"I {tag}  : ",
        "brief": f"I/{tag}  ( 1234): ",
    }[style]
    return "".join(prefix + line + "\n" for line in text.splitlines())


# ---- tflite-benchmark (written from the format, not captured) -------------------------------

# TF >= 2.12 / LiteRT: every line carries TFLite's "INFO: " prefix; statistics print percentiles.
TFLITE_LITERT = """\
INFO: STARTING!
INFO: Log parameter values verbosely: [0]
INFO: Num threads: [2]
INFO: Graph: [/data/local/tmp/mobilenet_v2.tflite]
INFO: #threads used for CPU inference: [2]
INFO: Loaded model /data/local/tmp/mobilenet_v2.tflite
INFO: Created TensorFlow Lite XNNPACK delegate for CPU.
INFO: The input model file size (MB): 13.9786
INFO: Initialized session in 28.465ms.
INFO: Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
INFO: count=38 first=18733 curr=12867 min=12612 max=18733 avg=13223.7 std=1010 p5=12647 median=12985 p95=14411

INFO: Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
INFO: count=77 first=13026 curr=12889 min=12596 max=13593 avg=1.29744e+04 std=203 p5=12668 median=12950 p95=13385

INFO: Inference timings in us: Init: 28465, First inference: 18733, Warmup (avg): 13223.7, Inference (avg): 12974.4
INFO: Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to \
the actual memory footprint of the model at runtime. Take the information at your discretion.
INFO: Memory footprint delta from the start of the tool (MB): init=33.7227 overall=44.5625
INFO: Overall peak memory footprint (MB) via periodic monitoring: 49.1836
INFO: Memory status at the end of exeution:
INFO: - VmRSS              : 46 MB
INFO: + RssAnnon           : 31 MB
INFO: + RssFile + RssShmem : 15 MB
"""

# TF 1.x wording.
TFLITE_TF1 = """\
Loaded model mobilenet_quant_v1_224.tflite
resolved reporter
Initialized session in 3.129ms
Running benchmark for 1 iterations
count=1 curr=87066

Running benchmark for 50 iterations
count=50 first=84402 curr=83590 min=82994 max=86811 avg=83839.9 std=763

Average inference timings in us: Warmup: 87066, Init: 3129, no stats: 83839.9
"""

# ---- ort-perf-test (written from the format, not captured) -----------------------------------

ORT_OLD_WORDING = """\
Session creation time cost: 0.0356 s
Total time cost: 1.25 s
Total iterations: 100
Average time cost: 12.5 ms
"""

ORT_OTHER_UNITS = """\
Session creation time cost: 356 ms
First inference time cost: 1.5e+01 ms
Total inference time cost: 1250000 us
Total inference requests: 100
Average inference time cost: 12500 us
Total inference run time: 1.26 s
Number of inferences per second: 80
Avg CPU usage: 97 %
Peak working set size: 1048576 bytes
Min Latency: 0.011 s
Max Latency: 0.0161 s
P50 Latency: 12400 us
P90 Latency: 13.1 ms
P95 Latency: 0.0135
P99 Latency: 0.016 s
P999 Latency: 0.0161 s
"""

# ---- dumpsys-meminfo (written from the format, not captured) ---------------------------------

# Android 4.4: no App Summary, "Swapped Dirty" column, heap cells only on the heap rows.
MEMINFO_KITKAT = """\
Applications Memory Usage (kB):
Uptime: 1234567 Realtime: 1234567

** MEMINFO in pid 1234 [com.example.app] **
                   Pss  Private  Private  Swapped     Heap     Heap     Heap
                 Total    Dirty    Clean    Dirty     Size    Alloc     Free
                ------   ------   ------   ------   ------   ------   ------
  Native Heap     2780     2736        0        0     8192     4511     3680
  Dalvik Heap     6364     6260        0        0    12772    12423      349
 Dalvik Other      536      536        0        0
        Stack      148      148        0        0
    Other dev        4        0        4        0
     .so mmap     1052      440      144        0
    .apk mmap       84        0       12        0
    .dex mmap      444        8      428        0
   Other mmap        5        4        0        0
      Unknown     1268     1268        0        0
        TOTAL    12681    11400      588        0    20964    16934     4029

 Objects
               Views:       27         ViewRootImpl:        1
         AppContexts:        3           Activities:        1
"""

MEMINFO_NO_PROCESS = "No process found for: com.example.missing\n"

MEMINFO_SYSTEM_WIDE = """\
Applications Memory Usage (in Kilobytes):
Uptime: 1234567 Realtime: 1234567

Total PSS by process:
    312,345K: system (pid 1234)
    201,004K: com.android.systemui (pid 2345)
"""

# ---- dumpsys-battery (written from the format, not captured) ---------------------------------

BATTERY_ANDROID13 = """\
Current Battery Service state:
  AC powered: false
  USB powered: true
  Wireless powered: false
  Dock powered: false
  Max charging current: 500000
  Max charging voltage: 5000000
  Charge counter: 3863000
  status: 2
  health: 2
  present: true
  level: 85
  scale: 100
  voltage: 4215
  temperature: 285
  technology: Li-ion
  Charging state: 1
  Charging policy: 1
  Capacity level: 3
"""

# An older phone, updates stopped by "dumpsys battery unplug", a vendor "current now" line in mA.
BATTERY_OLD_VENDOR = """\
Current Battery Service state:
  (UPDATES STOPPED -- use 'reset' to restart)
  AC powered: false
  USB powered: false
  Wireless powered: false
  Max charging current: 0
  status: 3
  health: 2
  present: true
  level: 41
  scale: 100
  voltage: 3791000
  temperature: -52
  technology: Li-poly
  current now: -412
"""

# ---- power-supply (written from the format, not captured) ------------------------------------

POWER_SUPPLY_UEVENT = """\
POWER_SUPPLY_NAME=battery
POWER_SUPPLY_TYPE=Battery
POWER_SUPPLY_STATUS=Discharging
POWER_SUPPLY_HEALTH=Good
POWER_SUPPLY_PRESENT=1
POWER_SUPPLY_TECHNOLOGY=Li-ion
POWER_SUPPLY_CAPACITY=78
POWER_SUPPLY_VOLTAGE_NOW=3987000
POWER_SUPPLY_CURRENT_NOW=-512000
POWER_SUPPLY_CURRENT_AVG=-498000
POWER_SUPPLY_TEMP=301
POWER_SUPPLY_CHARGE_COUNTER=3604000
POWER_SUPPLY_CHARGE_FULL=4520000
POWER_SUPPLY_CHARGE_FULL_DESIGN=4614000
POWER_SUPPLY_CYCLE_COUNT=187
"""

# grep -r . /sys/class/power_supply/battery/ (the uevent file shows up as well); vendor reports mA.
POWER_SUPPLY_GREP = """\
/sys/class/power_supply/battery/capacity:64
/sys/class/power_supply/battery/charge_counter:2987000
/sys/class/power_supply/battery/current_now:734
/sys/class/power_supply/battery/health:Good
/sys/class/power_supply/battery/present:1
/sys/class/power_supply/battery/status:Charging
/sys/class/power_supply/battery/technology:Li-ion
/sys/class/power_supply/battery/temp:254
/sys/class/power_supply/battery/type:Battery
/sys/class/power_supply/battery/uevent:POWER_SUPPLY_NAME=battery
/sys/class/power_supply/battery/uevent:POWER_SUPPLY_CAPACITY=64
/sys/class/power_supply/battery/voltage_now:4102000
"""

# for f in capacity status voltage_now current_now temp; do echo "$f: $(cat $f)"; done
POWER_SUPPLY_COLON = """\
capacity: 100
status: Full
voltage_now: 4380000
current_now: 0
temp: 312
"""

# ---- dumpsys-thermalservice (written from the format, not captured) --------------------------

THERMAL_ANDROID14 = """\
IsStatusOverride: false
ThermalEventListeners:
\tcallbacks: 2
\tkilled: false
\tbroadcasts count: -1
ThermalStatusListeners:
\tcallbacks: 2
\tkilled: false
\tbroadcasts count: -1
Thermal Status: 1
Cached temperatures:
\tTemperature{mValue=38.2, mType=3, mName=skin, mStatus=0}
\tTemperature{mValue=31.0, mType=2, mName=battery, mStatus=0}
HAL Ready: true
HAL connection:
\tThermalHAL AIDL 1  connected: yes
Current temperatures from HAL:
\tTemperature{mValue=41.5, mType=3, mName=skin, mStatus=1}
\tTemperature{mValue=33.0, mType=2, mName=battery, mStatus=0}
\tTemperature{mValue=55.25, mType=0, mName=cpu0, mStatus=0}
\tTemperature{mValue=NaN, mType=9, mName=npu, mStatus=0}
Current cooling devices from HAL:
\tCoolingDevice{mValue=0, mType=2, mName=thermal-cpufreq-0}
\tCoolingDevice{mValue=2, mType=0, mName=fan}
Temperature static thresholds from HAL:
\tTemperatureThreshold{mType=3, mName=skin, mHotThrottlingThresholds=[NaN, 39.0, 43.0, 45.0, 47.0, 52.0, \
55.0], mColdThrottlingThresholds=[NaN, NaN, NaN, NaN, NaN, NaN, NaN]}
"""

# HAL not connected: only the cached section.
THERMAL_CACHED_ONLY = """\
IsStatusOverride: false
Thermal Status: 0
Cached temperatures:
\tTemperature{mValue=29.5, mType=3, mName=skin, mStatus=0}
HAL Ready: false
HAL connection:
\tNo HAL connection
"""

# ---- odpm (written from the format, not captured) --------------------------------------------

# Pixel 6: cat /sys/bus/iio/devices/iio:device0/energy_value /sys/bus/iio/devices/iio:device1/energy_value
ODPM_TWO_DEVICES = """\
t=3357178
CH0(T=3357178)[S10M_VDD_TPU], 145297851
CH1(T=3357178)[VSYS_PWR_MODEM], 1524419766
CH2(T=3357178)[VSYS_PWR_RFFE], 43416270
CH3(T=3357178)[S2M_VDD_CPUCL2], 658207441
t=3357181
CH0(T=3357181)[S4M_VDD_CPUCL0], 929484027
CH1(T=3357181)[S5M_VDD_INT], 556180467
CH2(T=3357181)[S1M_VDD_MIF], 577563617
CH3(T=3357181)[VSYS_PWR_DISPLAY], 1090563211
"""

# Older driver: the subsystem printed next to the rail name.
ODPM_WITH_SUBSYSTEM = """\
t=120044
CH0(T=120044)[VSYS_PWR_DISPLAY, Display], 31415926
CH1(T=120044)[S2M_VDD_CPUCL2, CPU(BIG)], 27182818
"""

# cat .../enabled_rails
ODPM_ENABLED_RAILS = """\
CH0[S10M_VDD_TPU]:TPU
CH1[VSYS_PWR_MODEM]:Modem
CH2[S2M_VDD_CPUCL2]:CPU(BIG)
"""

# ---- tegrastats (written from the format, not captured) --------------------------------------

# JetPack 4, Jetson Nano: IRAM, POM_ rails without units, no timestamp.
TEGRASTATS_JP4_NANO = (
    "RAM 1553/3964MB (lfb 383x4MB) SWAP 0/1982MB (cached 0MB) IRAM 0/252kB(lfb 252kB) "
    "CPU [7%@102,3%@102,off,off] EMC_FREQ 0%@1600 GR3D_FREQ 0%@76 APE 25 "
    "PLL@23.5C CPU@26C PMIC@100C GPU@24.5C AO@31C thermal@25.25C "
    "POM_5V_IN 1583/1600 POM_5V_GPU 0/0 POM_5V_CPU 198/205"
)

# JetPack 4, AGX Xavier: MTS, rails named GPU/CPU/SOC without POM_ and without mW.
TEGRASTATS_JP4_XAVIER = (
    "RAM 2048/15698MB (lfb 3060x4MB) SWAP 0/7849MB (cached 0MB) "
    "CPU [1%@1190,0%@1190,0%@1190,0%@1190,off,off,off,off] EMC_FREQ 0%@2133 GR3D_FREQ 0%@1377 "
    "APE 150 MTS fg 0% bg 0% AO@36C GPU@37C Tdiode@39.5C PMIC@100C AUX@36C CPU@37.5C thermal@37.05C "
    "Tboard@37C GPU 0/0 CPU 306/306 SOC 1072/1072 CV 0/0 VDDRQ 153/153 SYS5V 1524/1524"
)

# JetPack 5, AGX Orin: -256C sentinels, two GPC frequencies, VIC_FREQ as a bare frequency.
TEGRASTATS_JP5_AGX_ORIN = (
    "08-01-2023 10:11:12 RAM 2893/30536MB (lfb 6601x4MB) SWAP 0/15268MB (cached 0MB) "
    "CPU [1%@729,0%@729,0%@729,0%@729,off,off,off,off,off,off,off,off] EMC_FREQ 0%@2133 "
    "GR3D_FREQ 0%@[305,305] VIC_FREQ 729 APE 174 CV0@-256C CPU@44.937C Tboard@33C SOC2@41.406C "
    "Tdiode@34.5C SOC0@41.843C CV1@-256C GPU@-256C tj@44.937C SOC1@40.812C CV2@-256C "
    "VDD_GPU_SOC 2797mW/2797mW VDD_CPU_CV 400mW/400mW VIN_SYS_5V0 2925mW/2925mW VDDQ_VDD2_1V8AO 302mW/302mW"
)

# ---- vcgencmd (written from the format, not captured) ----------------------------------------

VCGENCMD_ALL = """\
throttled=0x50005
temp=48.3'C
frequency(48)=1800404352
volt=0.8563V
"""

# ---- proc-status (written from the format, not captured) -------------------------------------

PROC_STATUS_5_10 = """\
Name:\tbenchmark_model
Umask:\t0022
State:\tR (running)
Tgid:\t8123
Ngid:\t0
Pid:\t8123
PPid:\t8101
TracerPid:\t0
Uid:\t2000\t2000\t2000\t2000
Gid:\t2000\t2000\t2000\t2000
FDSize:\t64
Groups:\t1004 1007 1011 1015 1028 3001 3002 3003 3006 3009 3011
VmPeak:\t 2254412 kB
VmSize:\t 2191876 kB
VmLck:\t       0 kB
VmPin:\t       0 kB
VmHWM:\t  142308 kB
VmRSS:\t  138916 kB
RssAnon:\t  103204 kB
RssFile:\t   35548 kB
RssShmem:\t     164 kB
VmData:\t  241112 kB
VmStk:\t     132 kB
VmExe:\t    3516 kB
VmLib:\t   13372 kB
VmPTE:\t     524 kB
VmSwap:\t    1024 kB
CoreDumping:\t0
THP_enabled:\t1
Threads:\t5
SigQ:\t0/21251
voluntary_ctxt_switches:\t31
nonvoluntary_ctxt_switches:\t7
"""

# A kernel thread: no Vm* lines at all.
PROC_STATUS_KTHREAD = """\
Name:\tkworker/0:1-events
Umask:\t0000
State:\tI (idle)
Tgid:\t17
Pid:\t17
PPid:\t2
Threads:\t1
"""

# ---- cpufreq (written from the format, not captured) -----------------------------------------

# grep -r . /sys/devices/system/cpu/cpufreq/  (two clusters; policy4 capped by a thermal limit)
CPUFREQ_GREP = """\
/sys/devices/system/cpu/cpufreq/policy0/affected_cpus:0 1 2 3
/sys/devices/system/cpu/cpufreq/policy0/cpuinfo_max_freq:1800000
/sys/devices/system/cpu/cpufreq/policy0/cpuinfo_min_freq:300000
/sys/devices/system/cpu/cpufreq/policy0/cpuinfo_transition_latency:0
/sys/devices/system/cpu/cpufreq/policy0/related_cpus:0 1 2 3
/sys/devices/system/cpu/cpufreq/policy0/scaling_available_frequencies:300000 576000 768000 1017600 1248000 1497600 \
1804800
/sys/devices/system/cpu/cpufreq/policy0/scaling_available_governors:schedutil performance powersave
/sys/devices/system/cpu/cpufreq/policy0/scaling_cur_freq:1017600
/sys/devices/system/cpu/cpufreq/policy0/scaling_driver:qcom-cpufreq-hw
/sys/devices/system/cpu/cpufreq/policy0/scaling_governor:schedutil
/sys/devices/system/cpu/cpufreq/policy0/scaling_max_freq:1800000
/sys/devices/system/cpu/cpufreq/policy0/scaling_min_freq:300000
/sys/devices/system/cpu/cpufreq/policy0/scaling_setspeed:<unsupported>
/sys/devices/system/cpu/cpufreq/policy0/stats/time_in_state:300000 123456
/sys/devices/system/cpu/cpufreq/policy0/stats/time_in_state:1804800 4567
/sys/devices/system/cpu/cpufreq/policy4/affected_cpus:4 5 6 7
/sys/devices/system/cpu/cpufreq/policy4/cpuinfo_max_freq:2841600
/sys/devices/system/cpu/cpufreq/policy4/cpuinfo_min_freq:710400
/sys/devices/system/cpu/cpufreq/policy4/related_cpus:4 5 6 7
/sys/devices/system/cpu/cpufreq/policy4/scaling_available_frequencies:710400 1190400 1766400 2419200 2841600
/sys/devices/system/cpu/cpufreq/policy4/scaling_boost_frequencies:3000000
/sys/devices/system/cpu/cpufreq/policy4/scaling_cur_freq:1766400
/sys/devices/system/cpu/cpufreq/policy4/scaling_governor:performance
/sys/devices/system/cpu/cpufreq/policy4/scaling_max_freq:1766400
/sys/devices/system/cpu/cpufreq/policy4/scaling_min_freq:710400
grep: /sys/devices/system/cpu/cpufreq/policy4/cpuinfo_cur_freq: Permission denied
/sys/devices/system/cpu/cpufreq/policy4/stats/trans_table:   From  :    To
"""

# for f in /sys/devices/system/cpu/cpufreq/policy*/*; do echo "$f: $(cat $f)"; done  (a Raspberry Pi)
CPUFREQ_ECHO = """\
/sys/devices/system/cpu/cpufreq/policy0/affected_cpus: 0 1 2 3
/sys/devices/system/cpu/cpufreq/policy0/cpuinfo_cur_freq: 1500000
/sys/devices/system/cpu/cpufreq/policy0/cpuinfo_max_freq: 1500000
/sys/devices/system/cpu/cpufreq/policy0/cpuinfo_min_freq: 600000
/sys/devices/system/cpu/cpufreq/policy0/related_cpus: 0 1 2 3
/sys/devices/system/cpu/cpufreq/policy0/scaling_available_frequencies: 600000 700000 800000 900000 1000000 \
1100000 1200000 1300000 1400000 1500000
/sys/devices/system/cpu/cpufreq/policy0/scaling_cur_freq: 600000
/sys/devices/system/cpu/cpufreq/policy0/scaling_governor: ondemand
/sys/devices/system/cpu/cpufreq/policy0/scaling_max_freq: 1500000
/sys/devices/system/cpu/cpufreq/policy0/scaling_min_freq: 600000
/sys/devices/system/cpu/cpufreq/policy0/stats: 
"""

# ---- getprop (written from the format, not captured) -----------------------------------------

GETPROP_PIXEL = """\
[dalvik.vm.heapsize]: [512m]
[persist.sys.locale]: []
[ro.board.platform]: [gs201]
[ro.build.fingerprint]: [google/cheetah/cheetah:14/AP2A.240805.005/12025142:user/release-keys]
[ro.build.id]: [AP2A.240805.005]
[ro.build.version.release]: [14]
[ro.build.version.sdk]: [34]
[ro.build.version.security_patch]: [2024-08-05]
[ro.hardware]: [cheetah]
[ro.product.brand]: [google]
[ro.product.cpu.abi]: [arm64-v8a]
[ro.product.cpu.abilist]: [arm64-v8a]
[ro.product.device]: [cheetah]
[ro.product.manufacturer]: [Google]
[ro.product.model]: [Pixel 7 Pro]
[ro.soc.manufacturer]: [Google]
[ro.soc.model]: [GS201]
[sys.usb.config]: [adb]
[vendor.multiline.note]: [first line
second line]
"""

# An Android 9 phone: no ro.soc.*, model only under ro.product.system.*.
GETPROP_PIE = """\
[ro.board.platform]: [sdm845]
[ro.build.version.release]: [9]
[ro.build.version.sdk]: [28]
[ro.product.cpu.abi]: [arm64-v8a]
[ro.product.cpu.abilist]: [arm64-v8a,armeabi-v7a,armeabi]
[ro.product.system.manufacturer]: [Xiaomi]
[ro.product.system.model]: [MI 8]
"""

# One representative input per kind (the cross-checks feed each to every other parser).
SAMPLES = {
    "tflite-benchmark": TFLITE_LITERT,
    "ort-perf-test": ORT_OTHER_UNITS,
    "dumpsys-meminfo": MEMINFO_KITKAT,
    "dumpsys-battery": BATTERY_ANDROID13,
    "power-supply": POWER_SUPPLY_UEVENT,
    "dumpsys-thermalservice": THERMAL_ANDROID14,
    "odpm": ODPM_TWO_DEVICES,
    "tegrastats": TEGRASTATS_JP5_AGX_ORIN,
    "vcgencmd": VCGENCMD_ALL,
    "proc-status": PROC_STATUS_5_10,
    "cpufreq": CPUFREQ_GREP,
    "getprop": GETPROP_PIXEL,
}
REAL_SAMPLES = {
    "tflite-benchmark": "tflite_benchmark_model/qemuriscv64_mobilenet_v1_op_profiling.txt",
    "ort-perf-test": "ort_perf_test/spacemit_k1_yolov8n_int8.txt",
    "dumpsys-meminfo": "dumpsys_meminfo/honor_android14_memorylab_meminfo.txt",
    "tegrastats": "tegrastats/orin_nano_8gb_jp6_two_captures.txt",
}
