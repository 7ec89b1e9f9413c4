//! Record types: the name auditd writes after `type=`, its number, and what
//! the number says about where an event ends.
//!
//! auditd writes a type's name (`SYSCALL`), or `UNKNOWN[1420]` for a number
//! its table does not know. The numbers are those of the kernel's
//! `include/uapi/linux/audit.h` and of libaudit's `lib/libaudit.h`.

/// The number of record type `name` (`"SYSCALL"` → 1300, `"UNKNOWN[1420]"` →
/// 1420), or `None` for a name this table does not know.
pub fn record_type_number(name: &str) -> Option<u16> {
    let number = match name {
        // 1000–1099: the netlink commands; only these two are ever logged.
        "USER" => 1005,
        "LOGIN" => 1006,
        // 1100–1199: messages from user space (PAM, sshd, systemd, sudo, …).
        "USER_AUTH" => 1100,
        "USER_ACCT" => 1101,
        "USER_MGMT" => 1102,
        "CRED_ACQ" => 1103,
        "CRED_DISP" => 1104,
        "USER_START" => 1105,
        "USER_END" => 1106,
        "USER_AVC" => 1107,
        "USER_CHAUTHTOK" => 1108,
        "USER_ERR" => 1109,
        "CRED_REFR" => 1110,
        "USYS_CONFIG" => 1111,
        "USER_LOGIN" => 1112,
        "USER_LOGOUT" => 1113,
        "ADD_USER" => 1114,
        "DEL_USER" => 1115,
        "ADD_GROUP" => 1116,
        "DEL_GROUP" => 1117,
        "DAC_CHECK" => 1118,
        "CHGRP_ID" => 1119,
        "TEST" => 1120,
        "TRUSTED_APP" => 1121,
        "USER_SELINUX_ERR" => 1122,
        "USER_CMD" => 1123,
        "USER_TTY" => 1124,
        "CHUSER_ID" => 1125,
        "GRP_AUTH" => 1126,
        "SYSTEM_BOOT" => 1127,
        "SYSTEM_SHUTDOWN" => 1128,
        "SYSTEM_RUNLEVEL" => 1129,
        "SERVICE_START" => 1130,
        "SERVICE_STOP" => 1131,
        "GRP_MGMT" => 1132,
        "GRP_CHAUTHTOK" => 1133,
        "MAC_CHECK" => 1134,
        "ACCT_LOCK" => 1135,
        "ACCT_UNLOCK" => 1136,
        "USER_DEVICE" => 1137,
        "SOFTWARE_UPDATE" => 1138,
        // 1200–1299: written by auditd itself.
        "DAEMON_START" => 1200,
        "DAEMON_END" => 1201,
        "DAEMON_ABORT" => 1202,
        "DAEMON_CONFIG" => 1203,
        "DAEMON_RECONFIG" => 1204,
        "DAEMON_ROTATE" => 1205,
        "DAEMON_RESUME" => 1206,
        "DAEMON_ACCEPT" => 1207,
        "DAEMON_CLOSE" => 1208,
        "DAEMON_ERR" => 1209,
        // 1300–1399: the kernel's event records.
        "SYSCALL" => 1300,
        "FS_WATCH" => 1301,
        "PATH" => 1302,
        "IPC" => 1303,
        "SOCKETCALL" => 1304,
        "CONFIG_CHANGE" => 1305,
        "SOCKADDR" => 1306,
        "CWD" => 1307,
        "FS_INODE" => 1308,
        "EXECVE" => 1309,
        "IPC_SET_PERM" => 1311,
        "MQ_OPEN" => 1312,
        "MQ_SENDRECV" => 1313,
        "MQ_NOTIFY" => 1314,
        "MQ_GETSETATTR" => 1315,
        "KERNEL_OTHER" => 1316,
        "FD_PAIR" => 1317,
        "OBJ_PID" => 1318,
        "TTY" => 1319,
        "EOE" => 1320,
        "BPRM_FCAPS" => 1321,
        "CAPSET" => 1322,
        "MMAP" => 1323,
        "NETFILTER_PKT" => 1324,
        "NETFILTER_CFG" => 1325,
        "SECCOMP" => 1326,
        "PROCTITLE" => 1327,
        "FEATURE_CHANGE" => 1328,
        "REPLACE" => 1329,
        "KERN_MODULE" => 1330,
        "FANOTIFY" => 1331,
        "TIME_INJOFFSET" => 1332,
        "TIME_ADJNTPVAL" => 1333,
        "BPF" => 1334,
        "EVENT_LISTENER" => 1335,
        "URINGOP" => 1336,
        "OPENAT2" => 1337,
        "DM_CTRL" => 1338,
        "DM_EVENT" => 1339,
        // 1400–1499: SELinux, NetLabel, IPE.
        "AVC" => 1400,
        "SELINUX_ERR" => 1401,
        "AVC_PATH" => 1402,
        "MAC_POLICY_LOAD" => 1403,
        "MAC_STATUS" => 1404,
        "MAC_CONFIG_CHANGE" => 1405,
        "MAC_UNLBL_ALLOW" => 1406,
        "MAC_CIPSOV4_ADD" => 1407,
        "MAC_CIPSOV4_DEL" => 1408,
        "MAC_MAP_ADD" => 1409,
        "MAC_MAP_DEL" => 1410,
        "MAC_IPSEC_ADDSA" => 1411,
        "MAC_IPSEC_DELSA" => 1412,
        "MAC_IPSEC_ADDSPD" => 1413,
        "MAC_IPSEC_DELSPD" => 1414,
        "MAC_IPSEC_EVENT" => 1415,
        "MAC_UNLBL_STCADD" => 1416,
        "MAC_UNLBL_STCDEL" => 1417,
        "MAC_CALIPSO_ADD" => 1418,
        "MAC_CALIPSO_DEL" => 1419,
        "IPE_ACCESS" => 1420,
        "IPE_CONFIG_CHANGE" => 1421,
        "IPE_POLICY_LOAD" => 1422,
        // 1500–1599: AppArmor.
        "APPARMOR" => 1500,
        "APPARMOR_AUDIT" => 1501,
        "APPARMOR_ALLOWED" => 1502,
        "APPARMOR_DENIED" => 1503,
        "APPARMOR_HINT" => 1504,
        "APPARMOR_STATUS" => 1505,
        "APPARMOR_ERROR" => 1506,
        "APPARMOR_KILL" => 1507,
        // 1700–1799: kernel anomalies; 1800–1899: integrity (IMA/EVM).
        "ANOM_PROMISCUOUS" => 1700,
        "ANOM_ABEND" => 1701,
        "ANOM_LINK" => 1702,
        "ANOM_CREAT" => 1703,
        "INTEGRITY_DATA" => 1800,
        "INTEGRITY_METADATA" => 1801,
        "INTEGRITY_STATUS" => 1802,
        "INTEGRITY_HASH" => 1803,
        "INTEGRITY_PCR" => 1804,
        "INTEGRITY_RULE" => 1805,
        "INTEGRITY_EVM_XATTR" => 1806,
        "INTEGRITY_POLICY_RULE" => 1807,
        "KERNEL" => 2000,
        // 2100–2999: more messages from user space.
        "ANOM_LOGIN_FAILURES" => 2100,
        "ANOM_LOGIN_TIME" => 2101,
        "ANOM_LOGIN_SESSIONS" => 2102,
        "ANOM_LOGIN_ACCT" => 2103,
        "ANOM_LOGIN_LOCATION" => 2104,
        "ANOM_MAX_DAC" => 2105,
        "ANOM_MAX_MAC" => 2106,
        "ANOM_AMTU_FAIL" => 2107,
        "ANOM_RBAC_FAIL" => 2108,
        "ANOM_RBAC_INTEGRITY_FAIL" => 2109,
        "ANOM_CRYPTO_FAIL" => 2110,
        "ANOM_ACCESS_FS" => 2111,
        "ANOM_EXEC" => 2112,
        "ANOM_MK_EXEC" => 2113,
        "ANOM_ADD_ACCT" => 2114,
        "ANOM_DEL_ACCT" => 2115,
        "ANOM_MOD_ACCT" => 2116,
        "ANOM_ROOT_TRANS" => 2117,
        "ANOM_LOGIN_SERVICE" => 2118,
        "RESP_ANOMALY" => 2200,
        "RESP_ALERT" => 2201,
        "RESP_KILL_PROC" => 2202,
        "RESP_TERM_ACCESS" => 2203,
        "RESP_ACCT_REMOTE" => 2204,
        "RESP_ACCT_LOCK_TIMED" => 2205,
        "RESP_ACCT_UNLOCK_TIMED" => 2206,
        "RESP_ACCT_LOCK" => 2207,
        "RESP_TERM_LOCK" => 2208,
        "RESP_SEBOOL" => 2209,
        "RESP_EXEC" => 2210,
        "RESP_SINGLE" => 2211,
        "RESP_HALT" => 2212,
        "RESP_ORIGIN_BLOCK" => 2213,
        "RESP_ORIGIN_BLOCK_TIMED" => 2214,
        "USER_ROLE_CHANGE" => 2300,
        "ROLE_ASSIGN" => 2301,
        "ROLE_REMOVE" => 2302,
        "LABEL_OVERRIDE" => 2303,
        "LABEL_LEVEL_CHANGE" => 2304,
        "USER_LABELED_EXPORT" => 2305,
        "USER_UNLABELED_EXPORT" => 2306,
        "DEV_ALLOC" => 2307,
        "DEV_DEALLOC" => 2308,
        "FS_RELABEL" => 2309,
        "USER_MAC_POLICY_LOAD" => 2310,
        "ROLE_MODIFY" => 2311,
        "USER_MAC_CONFIG_CHANGE" => 2312,
        "CRYPTO_TEST_USER" => 2400,
        "CRYPTO_PARAM_CHANGE_USER" => 2401,
        "CRYPTO_LOGIN" => 2402,
        "CRYPTO_LOGOUT" => 2403,
        "CRYPTO_KEY_USER" => 2404,
        "CRYPTO_FAILURE_USER" => 2405,
        "CRYPTO_REPLAY_USER" => 2406,
        "CRYPTO_SESSION" => 2407,
        "CRYPTO_IKE_SA" => 2408,
        "CRYPTO_IPSEC_SA" => 2409,
        "VIRT_CONTROL" => 2500,
        "VIRT_RESOURCE" => 2501,
        "VIRT_MACHINE_ID" => 2502,
        "VIRT_INTEGRITY_CHECK" => 2503,
        "VIRT_CREATE" => 2504,
        "VIRT_DESTROY" => 2505,
        "VIRT_MIGRATE_IN" => 2506,
        "VIRT_MIGRATE_OUT" => 2507,
        other => return unknown_type_number(other),
    };
    Some(number)
}

/// `UNKNOWN[1420]` → 1420: how auditd names a number it has no name for.
fn unknown_type_number(name: &str) -> Option<u16> {
    let digits = name.strip_prefix("UNKNOWN[")?.strip_suffix(']')?;
    if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The end-of-event record (`EOE`, 1320). The kernel sends it after the
/// last record of a multi-record event; auditd passes it to its plugins
/// but never writes it to `audit.log`.
pub(crate) const END_OF_EVENT: u16 = 1320;

/// `DAEMON_START` (1200): auditd started (after a boot, or restarted).
pub(crate) const DAEMON_START: u16 = 1200;

/// `PROCTITLE` (1327): the last record the kernel writes for a system call
/// before the `EOE` (`audit_log_exit` in `kernel/auditsc.c`).
pub(crate) const PROCTITLE: u16 = 1327;

/// `CONFIG_CHANGE` (1305): where the kernel reports a reset of its lost
/// counter (`op=set lost=0 old=N`).
pub(crate) const CONFIG_CHANGE: u16 = 1305;

/// Whether a record of this type, arriving as the first of its event, is
/// the whole event. The rule of libaudit's `audit_is_last_record()`
/// (`common/common.c`, used by auparse and ausearch), less `EOE` and
/// `PROCTITLE`, which this crate treats on their own:
///
/// * 1005 (`USER`) and 1007–1299: messages from user space (PAM, sshd,
///   sudo, systemd; the kernel logs them without a system-call context)
///   and auditd's own `DAEMON_*` records;
/// * 1406–1419: NetLabel configuration (`MAC_UNLBL_ALLOW` …
///   `MAC_CALIPSO_DEL`);
/// * 2000 (`KERNEL`) and 2100 and above: the kernel's asynchronous
///   record, and the second range of user-space messages (`ANOM_LOGIN_*`,
///   `RESP_*`, `CRYPTO_*`, `VIRT_*`, …).
pub fn is_standalone_type(number: u16) -> bool {
    number == 1005
        || (1007..1300).contains(&number)
        || (1406..=1419).contains(&number)
        || number == 2000
        || number >= 2100
}

/// Whether records of this type carry auditd's own serial (`DAEMON_*`,
/// 1200–1299): auditd numbers them from a counter of its own that starts
/// at a random value below 10000 (`send_audit_event` in `src/auditd.c`),
/// not from the kernel's.
pub fn has_auditd_serial(number: u16) -> bool {
    (1200..1300).contains(&number)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_unknown_numbers() {
        assert_eq!(record_type_number("SYSCALL"), Some(1300));
        assert_eq!(record_type_number("EOE"), Some(END_OF_EVENT));
        assert_eq!(record_type_number("PROCTITLE"), Some(PROCTITLE));
        assert_eq!(record_type_number("CONFIG_CHANGE"), Some(CONFIG_CHANGE));
        assert_eq!(record_type_number("SERVICE_START"), Some(1130));
        assert_eq!(record_type_number("UNKNOWN[1420]"), Some(1420));
        assert_eq!(record_type_number("UNKNOWN[]"), None);
        assert_eq!(record_type_number("UNKNOWN[99999999]"), None);
        assert_eq!(record_type_number("UNKNOWN[12a]"), None);
        assert_eq!(record_type_number("syscall"), None);
    }

    #[test]
    fn standalone_ranges_follow_audit_is_last_record() {
        for name in [
            "USER_LOGIN",
            "USER_CMD",
            "CRED_ACQ",
            "SERVICE_START",
            "DAEMON_START",
            "KERNEL",
            "CRYPTO_KEY_USER",
            "ANOM_LOGIN_FAILURES",
            "MAC_UNLBL_ALLOW",
            "USER",
        ] {
            assert!(
                is_standalone_type(record_type_number(name).unwrap()),
                "{name}"
            );
        }
        for name in [
            "SYSCALL",
            "PATH",
            "LOGIN",
            "CONFIG_CHANGE",
            "AVC",
            "ANOM_PROMISCUOUS",
            "INTEGRITY_RULE",
            "EOE",
            "PROCTITLE",
        ] {
            assert!(
                !is_standalone_type(record_type_number(name).unwrap()),
                "{name}"
            );
        }
        assert!(has_auditd_serial(1200) && has_auditd_serial(1209) && !has_auditd_serial(1300));
    }
}
