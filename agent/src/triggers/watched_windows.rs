//! Files whose change can change a posture check on Windows. Most Windows
//! posture lives in the registry and WMI, which are not watched cheaply
//! without OS hooks; the update log at least moves when updates install.

pub const FILES: &[&str] = &[r"C:\Windows\SoftwareDistribution\ReportingEvents.log"];
