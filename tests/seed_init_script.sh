#!/bin/sh
#/etc/init.d/ucarp: start ucarp daemon.
 
### BEGIN INIT INFO
# Provides:          ucarp
# Short-Description: Start software ucarp daemon
# Required-Start:    $local_fs $remote_fs $syslog
# Required-Stop:     $local_fs $remote_fs $syslog
# Default-Start:     2 3 4 5
# Default-Stop:      0 1 6
### END INIT INFO
 
PATH=/bin:/usr/bin:/sbin:/usr/sbin
 
# For configuration of the init script use the file
# /etc/default/ucarp, do not edit this init script.
 
# Set run_ucarp to 1 to start ucarp or 0 to disable it.
run_ucarp=1
 
R_INTERFACE=/etc/ucarp/interface
 
start() {
  if [ $run_ucarp = 1 ]
    then
 
        echo -n "Starting $NAME daemon: "
        for fichier in $( find $R_INTERFACE -type f -name '*' | sort )
        do
                [ -e $fichier ] && . $fichier
 
                $IFCONFIG $INTERFACE $VIRTUAL_ADDRESS netmask $VIRTUAL_NETMASK \
broadcast $VIRTUAL_BROADCAST
 
                UCARP_OPTS="$OPTIONS -b $UCARP_BASE -i $INTERFACE \ 
-v $INSTANCE_ID -p $PASSWORD -a $VIRTUAL_ADDRESS -s $SOURCE_ADDRESS"
 
                start-stop-daemon --start --background --make-pidfile \
--pidfile ${UCARP_PIDFILE} --quiet --exec ${UCARP_EXEC} -- ${UCARP_OPTS}
                echo ucarp.
 
        done
    fi
 
}
 
stop() {
    if [ $run_ucarp = 1 ]
    then
        echo -n "Stopping $NAME daemon: "
 
        for fichier in $( find $R_INTERFACE -type f -name '*' | sort )
        do
                [ -e $fichier ] && . $fichier
 
                $IFCONFIG $INTERFACE down
 
                if start-stop-daemon --stop --quiet --pidfile ${UCARP_PIDFILE}
                then
 
                        echo ucarp.
                else
                        echo
                fi
 
        done
    fi
 
 
}
 
 
 
[ -e /etc/default/ucarp ] && . /etc/default/ucarp
 
test -x ${UCARP_EXEC} || exit 0
 
NAME=ucarp
 
case "$1" in
  start)
        start "$2"
    ;;
 
  stop)
        stop "$2"
    ;;
 
  restart)
        stop "$2"
        start "$2"
    ;;
 
  force-reload)
        stop "$2"
        start "$2"
    ;;
 
  *)
    echo "Usage: /etc/init.d/ucarp {start|stop|restart|force-reload}"
    exit 1
 
esac
 
exit 0
 
