// Kernel A/B without the Swift build: links straight against CServalKernels' C sources
// (built by benchmarks/kernels-ab.sh for two commits) and, on one thread, by thread CPU
// time (so a loaded machine slows the clock less than it slows wall time):
//   c  check every Q4_0/Q4_1/Q8_0 path against scalar (widths 96/576/4096, odd splits)
//   m  the default model's matmul shapes at n = 1, 64, 512 (GOP/s, GB/s)
//   p  int8 peak per instruction form and a 256 MiB huge-page read, one thread
// Weights are random blocks with valid f16 scales; n = 1 shapes stay in the caches, so
// their GB/s is the kernel's instruction-bound speed, not a memory figure.
#include "serval_kernels.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <time.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_THREAD_CPUTIME_ID,&t);return t.tv_sec+t.tv_nsec*1e-9;}
static uint32_t rs=12345; static uint32_t rnd(void){rs=rs*1664525u+1013904223u;return rs>>8;}
#include <immintrin.h>
static void fill_w(int type, uint8_t *w, int rows, int k){
  int bs=sv_block_bytes(type), nb=k/32;
  for(int r=0;r<rows;r++) for(int b=0;b<nb;b++){ uint8_t *p=w+((size_t)r*nb+b)*bs;
    for(int i=0;i<bs;i++) p[i]=rnd();
    uint16_t d=_cvtss_sh(0.001f+(rnd()%1000)*1e-5f,0); memcpy(p,&d,2);
    if(type==SV_TYPE_Q4_1){uint16_t m=_cvtss_sh(-0.01f*(rnd()%100)/100,0); memcpy(p+2,&m,2);} }
}
int main(int argc,char**argv){
  int types[3]={SV_TYPE_Q4_0,SV_TYPE_Q4_1,SV_TYPE_Q8_0};
  int fails=0;
  int docheck = argc<2 || argv[1][0]=='c';
  for(int ti=0;ti<3 && docheck;ti++){ int type=types[ti];
   int ks[3]={96,576,4096}; int rowsv[3]={37,64,24};
   for(int ki=0;ki<3;ki++) for(int ri=0;ri<3;ri++) { int k=ks[ki], rows=rowsv[ri];
    int ns[6]={1,7,8,9,13,70};
    for(int ni=0;ni<6;ni++){ int n=ns[ni];
     uint8_t *w=malloc((size_t)rows*k/32*sv_block_bytes(type));
     fill_w(type,w,rows,k);
     float *x=malloc(sizeof(float)*n*k); for(int i=0;i<n*k;i++) x[i]=((int)(rnd()%2001)-1000)/1000.0f*((i%7)?1:3);
     size_t ab=sv_act_row_bytes(type,k); uint8_t *xq=malloc(ab*n);
     for(int r=0;r<n;r++) sv_quantize_act_row(1,type,x+r*k,xq+r*ab,k);
     float *y0=malloc(4*n*rows),*y1=malloc(4*n*rows);
     sv_matmul(0,type,w,k/32*sv_block_bytes(type),k,0,rows,xq,ab,n,y0,rows);
     for(int i=0;i<n*rows;i++) y1[i]=NAN;
     // split rows in two ranges like threads would
     int mid=rows/2/8*8+3;
     sv_matmul(1,type,w,k/32*sv_block_bytes(type),k,0,mid,xq,ab,n,y1,rows);
     sv_matmul(1,type,w,k/32*sv_block_bytes(type),k,mid,rows,xq,ab,n,y1,rows);
     double mx=0,me=0; for(int i=0;i<n*rows;i++){ if(fabs(y0[i])>mx)mx=fabs(y0[i]); double e=fabs(y0[i]-y1[i]); if(!(e<=me))me=isnan(e)?1e30:e>me?e:me;}
     if(me/mx>1e-5){printf("FAIL type %d k %d rows %d n %d rel %g\n",type,k,rows,n,me/mx);fails++;}
     free(w);free(x);free(xq);free(y0);free(y1);}
   }}
  printf("check fails=%d\n",fails);
  // timing single thread
  for(int ti=0;ti<3 && argc>1 && (argv[1][0]=='t'||argv[1][0]=='s');ti++){ if(argv[1][0]=='s'&&ti!=1)continue; int type=types[ti];
    int shapes[3][2]={{1536,576},{576,1536},{576,576}};
    for(int si=0;si<3;si++){ int rows=shapes[si][0],k=shapes[si][1];
     int ns[4]={1,16,64,512};
     for(int ni=0;ni<4;ni++){int n=ns[ni]; if(argv[1][0]=='s'&&n!=1)continue;
      size_t wb=(size_t)rows*k/32*sv_block_bytes(type);
      uint8_t *w=malloc(wb); fill_w(type,w,rows,k);
      float *x=malloc(sizeof(float)*n*k); for(int i=0;i<n*k;i++) x[i]=((int)(rnd()%2001)-1000)/1000.0f;
      size_t ab=sv_act_row_bytes(type,k); uint8_t *xq=malloc(ab*n);
      for(int r=0;r<n;r++) sv_quantize_act_row(1,type,x+r*k,xq+r*ab,k);
      float *y=malloc(4*n*rows);
      int calls=0; double t0=now(),t;
      do{ sv_matmul(1,type,w,k/32*sv_block_bytes(type),k,0,rows,xq,ab,n,y,rows); calls++; t=now()-t0;}while(t<0.2);
      printf("type %d %dx%d n=%d: %.1f us  %.1f GOP/s  %.2f GB/s\n",type,rows,k,n,t/calls*1e6,2.0*rows*k*n/(t/calls)/1e9,wb/(t/calls)/1e9);
      free(w);free(x);free(xq);free(y);}
    }}
  if(argc>1 && argv[1][0]=='m'){
    int cases[6][4]={{3,576,576,0},{3,192,576,0},{3,1536,576,0},{3,576,1536,0},{8,49152,576,0},{8,49152,576,1}};
    int ns[3]={1,64,512};
    for(int ci=0;ci<5;ci++) for(int ni=0;ni<3;ni++){ int type=cases[ci][0],rows=cases[ci][1],k=cases[ci][2],n=ns[ni];
      if(type==8&&n==512) continue;
      size_t wb=(size_t)rows*k/32*sv_block_bytes(type); uint8_t *w=malloc(wb); fill_w(type,w,rows,k);
      float *x=malloc(sizeof(float)*n*k); for(int i=0;i<n*k;i++) x[i]=((int)(rnd()%2001)-1000)/1000.0f;
      size_t ab=sv_act_row_bytes(type,k); uint8_t *xq=malloc(ab*n); for(int r=0;r<n;r++) sv_quantize_act_row(1,type,x+r*k,xq+r*ab,k);
      float *y=malloc(4*(size_t)n*rows); int calls=0; double t0=now(),t;
      do{ sv_matmul(1,type,w,k/32*sv_block_bytes(type),k,0,rows,xq,ab,n,y,rows); calls++; t=now()-t0;}while(t<0.15);
      printf("%s %dx%d n=%d: %.1f us %.1f GOP/s %.2f GB/s\n",type==3?"Q4_1":"Q8_0",rows,k,n,t/calls*1e6,2.0*rows*k*n/(t/calls)/1e9,wb/(t/calls)/1e9);
      free(w);free(x);free(xq);free(y);}
  }
  if(argc>1 && argv[1][0]=='p'){
   for(int f=0;f<SV_PEAK_COUNT;f++){ if(!sv_int8_peak_supported(f)){printf("%s unsupported\n",sv_int8_peak_name(f));continue;}
    double t0=now(); int64_t m=sv_int8_peak(f,3000000); double t=now()-t0; printf("%s: %.1f GOP/s 1 thread\n",sv_int8_peak_name(f),2.0*m/t/1e9);}
   size_t B=1<<28; void*p=sv_huge_alloc(B); memset(p,1,B);
   for(int i=0;i<3;i++){double t0=now(); uint64_t s=sv_read_bytes(p,B); double t=now()-t0; printf("read 1 thread %.2f GB/s (%llu)\n",B/t/1e9,(unsigned long long)s);}
  }
  return fails!=0;
}
